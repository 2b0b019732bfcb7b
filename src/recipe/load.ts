import { readFile } from "node:fs/promises";
import { isAbsolute, resolve } from "node:path";
import { LineCounter, parseDocument, isMap, isSeq, visit, type Document, type Node } from "yaml";
import type { z } from "zod";
import { UsageError } from "../util/errors.ts";
import { sha256Hex } from "../util/hash.ts";
import { recipeSchema, type Recipe } from "./schema.ts";
import { closest } from "./suggest.ts";

export class RecipeError extends UsageError {
  constructor(
    readonly file: string,
    readonly problems: string[],
  ) {
    super(problems.map((p) => `${file}:${p}`).join("\n"));
    this.name = "RecipeError";
  }
}

export interface LoadedRecipe {
  recipe: Recipe;
  /** Absolute path of the recipe file; local globs resolve against its folder. */
  path: string;
  sha256: string;
}

type PathKey = string | number;

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
function knownKeysAt(path: readonly PathKey[]): string[] {
  let schema: any = recipeSchema;
  const unwrap = () => {
    while (schema?._zod?.def && ["default", "optional", "nullable", "prefault"].includes(schema._zod.def.type)) {
      schema = schema._zod.def.innerType;
    }
  };
  unwrap();
  for (const key of path) {
    const def = schema?._zod?.def;
    if (def?.type === "object") schema = def.shape[key];
    else if (def?.type === "array") schema = def.element;
    else return [];
    unwrap();
  }
  const def = schema?._zod?.def;
  return def?.type === "object" ? Object.keys(def.shape) : [];
}

function describeIssue(issue: z.core.$ZodIssue, valueAt: (path: PathKey[]) => unknown): { path: PathKey[]; text: string; atKey?: boolean }[] {
  const path = issue.path.filter((k): k is PathKey => typeof k !== "symbol");
  if (issue.code === "unrecognized_keys") {
    const known = knownKeysAt(path);
    return issue.keys.map((key) => {
      const hint = closest(key, known);
      return {
        path: [...path, key],
        atKey: true,
        text: `unknown key '${key}'${hint ? ` — did you mean '${hint}'?` : ""} (allowed: ${known.join(", ")})`,
      };
    });
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
    return `${first?.range ? position(first.range[0]) : "1:1"}: YAML aliases expand to too many values (more than 100 alias uses, as in a "billion laughs" file); a recipe needs no such nesting`;
  }
  return `${first?.range ? position(first.range[0]) : "1:1"}: YAML error: ${error.message}`;
}

export function parseRecipe(text: string, file: string): Recipe {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const position = (offset: number) => {
    const { line, col } = lineCounter.linePos(offset);
    return `${line}:${col}`;
  };
  if (doc.errors.length > 0) {
    throw new RecipeError(
      file,
      doc.errors.map((e) => `${position(e.pos[0])}: YAML syntax error: ${e.message.split("\n")[0]}`),
    );
  }
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 });
  } catch (error) {
    throw new RecipeError(file, [aliasProblem(doc, error as Error, position)]);
  }
  const valueAt = (path: PathKey[]) => path.reduce<any>((v, k) => (v == null ? undefined : v[k]), data);
  const result = recipeSchema.safeParse(data);
  if (result.success) {
    const names = new Set<string>();
    const problems: string[] = [];
    result.data.sources.forEach((source, i) => {
      if (names.has(source.name)) {
        const node = nodeAt(doc.contents, ["sources", i, "name"]);
        problems.push(`${node?.range ? position(node.range[0]) : "1:1"}: sources[${i}].name: duplicate source name '${source.name}'; names must be unique`);
      }
      names.add(source.name);
    });
    if (problems.length > 0) throw new RecipeError(file, problems);
    return result.data;
  }
  const problems = result.error.issues.flatMap((issue) => describeIssue(issue, valueAt)).map(({ path, text: message, atKey }) => {
    // Point at the deepest node that exists: a missing field is reported at its parent.
    let node: Node | undefined = atKey ? nodeAt(doc.contents, path, true) : undefined;
    for (let depth = path.length; depth >= 0 && !node?.range; depth--) node = nodeAt(doc.contents, path.slice(0, depth));
    const where = node?.range ? position(node.range[0]) : "1:1";
    return `${where}: ${formatPath(path)}: ${message}`;
  });
  throw new RecipeError(file, problems);
}

export async function loadRecipe(file: string): Promise<LoadedRecipe> {
  const path = isAbsolute(file) ? file : resolve(file);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new UsageError(`${file}: cannot read recipe (${code ?? String(error)}); check the path`);
  }
  return { recipe: parseRecipe(text, file), path, sha256: sha256Hex(text) };
}
