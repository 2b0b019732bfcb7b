/**
 * A YAML file checked against a zod schema, with every problem reported as `file:line:col: field: what`
 * (recipes and evaluation tasks share it).
 */
import { LineCounter, parseDocument, isMap, isSeq, visit, type Document, type Node } from "yaml";
import type { z } from "zod";
import { UsageError } from "../util/errors.ts";
import { closest } from "./suggest.ts";

/** A file the user wrote that does not parse or validate; each problem starts with its line and column. */
export class YamlFileError extends UsageError {
  constructor(
    readonly file: string,
    readonly problems: string[],
  ) {
    super(problems.map((p) => `${file}:${p}`).join("\n"));
    this.name = "YamlFileError";
  }
}

export type PathKey = string | number;


function formatPath(path: readonly PathKey[]): string {
  let out = "";
  for (const key of path) out += typeof key === "number" ? `[${key}]` : out ? `.${key}` : key;
  return out || "(top level)";
}

/** The YAML node at a zod issue path, so errors can point at a line and column. */
function nodeAt(root: Node | null | undefined, path: readonly PathKey[], keyNode = false): Node | undefined {
  let node: unknown = root;
  for (const [i, key] of path.entries()) {
    if (keyNode && i === path.length - 1 && isMap(node)) {
      const pair = node.items.find((p) => (p.key as { value?: unknown } | null)?.value === key);
      return (pair?.key as Node | undefined) ?? undefined;
    }
    if (isMap(node)) node = node.get(key, true);
    else if (isSeq(node) && typeof key === "number") node = node.get(key, true);
    else return undefined;
  }
  return (node as Node | undefined) ?? undefined;
}

/** The keys a recipe object accepts at `path`, for "did you mean" hints. */
function knownKeysAt(root: z.ZodType, path: readonly PathKey[]): string[] {
  let schema: any = root;
  const unwrap = () => {
    while (schema?._zod?.def && ["default", "optional", "nullable", "prefault"].includes(schema._zod.def.type)) {
      schema = schema._zod.def.innerType;
    }
  };
  unwrap();
  // A union's mapping branch is where its keys are (`minhash: true | {ngram, ...}`).
  const objectBranch = () => {
    const def = schema?._zod?.def;
    if (def?.type === "union") schema = def.options.find((o: any) => o?._zod?.def?.type === "object") ?? schema;
  };
  objectBranch();
  for (const key of path) {
    const def = schema?._zod?.def;
    if (def?.type === "object") schema = def.shape[key];
    else if (def?.type === "array") schema = def.element;
    else return [];
    unwrap();
    objectBranch();
  }
  const def = schema?._zod?.def;
  return def?.type === "object" ? Object.keys(def.shape) : [];
}

function describeIssue(root: z.ZodType, issue: z.core.$ZodIssue, valueAt: (path: PathKey[]) => unknown): { path: PathKey[]; text: string; atKey?: boolean }[] {
  const path = issue.path.filter((k): k is PathKey => typeof k !== "symbol");
  if (issue.code === "unrecognized_keys") {
    const known = knownKeysAt(root, path);
    return issue.keys.map((key) => {
      const hint = closest(key, known);
      return {
        path: [...path, key],
        atKey: true,
        text: `unknown key '${key}'${hint ? ` — did you mean '${hint}'?` : ""} (allowed: ${known.join(", ")})`,
      };
    });
  }
  if (issue.code === "invalid_union") {
    // A value of the right kind for one branch (a mapping, say) is judged by that branch alone: its own issues,
    // located inside the value, say what is wrong better than "Invalid input".
    const inside = issue.errors.find((branch) => branch.length > 0 && branch.every((i) => i.path.length > 0));
    if (inside) return inside.flatMap((i) => describeIssue(root, { ...i, path: [...path, ...i.path] } as z.core.$ZodIssue, valueAt));
    const expected = [...new Set(issue.errors.flatMap((branch) => branch.flatMap((i) => (i.code === "invalid_type" ? [i.expected === "object" ? "a mapping" : i.expected] : []))))];
    const value = valueAt(path);
    if (expected.length > 0) return [{ path, text: `expected ${expected.join(" or ")}, got ${typeof value} ${JSON.stringify(value)?.slice(0, 40) ?? ""}`.trimEnd() }];
  }
  let text = issue.message;
  if (issue.code === "invalid_type") {
    const value = valueAt(path);
    text =
      typeof value === "number" && !Number.isFinite(value)
        ? `expected a finite number, got ${Number.isNaN(value) ? ".nan" : value > 0 ? ".inf" : "-.inf"}`
        : value === undefined
        ? `missing required field (expected ${issue.expected})`
        : `expected ${issue.expected}, got ${value === null ? "null" : Array.isArray(value) ? "a list" : typeof value} ${JSON.stringify(value)?.slice(0, 40) ?? ""}`.trimEnd();
  }
  return [{ path, text }];
}

/** toJS() fails on aliases without saying where: find the alias it means and point at it. */
function aliasProblem(doc: Document, error: Error, position: (offset: number) => string): string {
  let unresolved: Node | undefined;
  let first: Node | undefined;
  visit(doc, {
    Alias(_, node) {
      first ??= node;
      if (!unresolved && node.resolve(doc) === undefined) unresolved = node;
    },
  });
  if (unresolved) {
    const name = (unresolved as unknown as { source: string }).source;
    return `${unresolved.range ? position(unresolved.range[0]) : "1:1"}: YAML alias *${name} has no anchor &${name} before it; define the anchor first or write the value out`;
  }
  if (/alias count/i.test(error.message)) {
    return `${first?.range ? position(first.range[0]) : "1:1"}: YAML aliases expand to too many values (more than 100 alias uses, as in a "billion laughs" file); no file of this tool needs such nesting`;
  }
  return `${first?.range ? position(first.range[0]) : "1:1"}: YAML error: ${error.message}`;
}

export interface ParsedYaml<T> {
  data: T;
  /** `line:col` of the node at a path (its deepest existing parent for a missing field). */
  where(path: PathKey[]): string;
}

/** Parses and validates; throws makeError(file, problems) with every problem located. */
export function parseYamlWith<S extends z.ZodType>(
  schema: S,
  text: string,
  file: string,
  makeError: (file: string, problems: string[]) => Error = (f, p) => new YamlFileError(f, p),
): ParsedYaml<z.output<S>> {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const position = (offset: number) => {
    const { line, col } = lineCounter.linePos(offset);
    return `${line}:${col}`;
  };
  if (doc.errors.length > 0) {
    throw makeError(file, doc.errors.map((e) => `${position(e.pos[0])}: YAML syntax error: ${e.message.split("\n")[0]}`));
  }
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 });
  } catch (error) {
    throw makeError(file, [aliasProblem(doc, error as Error, position)]);
  }
  const where = (path: PathKey[], atKey = false) => {
    // Point at the deepest node that exists: a missing field is reported at its parent.
    let node: Node | undefined = atKey ? nodeAt(doc.contents, path, true) : undefined;
    for (let depth = path.length; depth >= 0 && !node?.range; depth--) node = nodeAt(doc.contents, path.slice(0, depth));
    return node?.range ? position(node.range[0]) : "1:1";
  };
  const valueAt = (path: PathKey[]) => path.reduce<any>((v, k) => (v == null ? undefined : v[k]), data);
  const result = schema.safeParse(data);
  if (result.success) return { data: result.data, where: (path) => where(path) };
  const problems = result.error.issues
    .flatMap((issue) => describeIssue(schema, issue, valueAt))
    .map(({ path, text: message, atKey }) => `${where(path, atKey)}: ${formatPath(path)}: ${message}`);
  throw makeError(file, problems);
}
