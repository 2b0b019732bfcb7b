/**
 * The prompt templates of task files: a small, safe subset of Jinja2 as lm-evaluation-harness's YAML uses it
 * (`{{Question.strip()}}`, `{{choices.label.index(answerKey)}}`, `{{[sol1, sol2]}}`, slices, `+`, filters).
 * Expressions read a row's columns and call a fixed list of string and list methods; nothing else is reachable.
 * A template that is one `{{ … }}` and nothing else yields the value itself (a list of choices, an index), as
 * the harness gets by rendering and then `ast.literal_eval`.
 */

export type Value = string | number | boolean | null | Value[] | { [key: string]: Value };

export class TemplateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TemplateError";
  }
}

type Token = { kind: "str" | "num" | "id" | "op"; text: string; value?: string | number; at: number };

function tokenize(src: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i]!;
    if (/\s/.test(c)) {
      i++;
    } else if (c === "'" || c === '"') {
      let s = "";
      let j = i + 1;
      for (; j < src.length && src[j] !== c; j++) {
        if (src[j] === "\\" && j + 1 < src.length) {
          // Python's escapes; an unknown one keeps its backslash ('\[' stays a regex escape).
          const e = src[++j]!;
          s += e === "n" ? "\n" : e === "t" ? "\t" : e === "\\" || e === "'" || e === '"' ? e : "\\" + e;
        } else s += src[j];
      }
      if (j >= src.length) throw new TemplateError(`unterminated string at ${i}`);
      out.push({ kind: "str", text: src.slice(i, j + 1), value: s, at: i });
      i = j + 1;
    } else if (/[0-9]/.test(c)) {
      const m = src.slice(i).match(/^[0-9]+/)!;
      out.push({ kind: "num", text: m[0], value: Number(m[0]), at: i });
      i += m[0].length;
    } else if (/[A-Za-z_]/.test(c)) {
      const m = src.slice(i).match(/^[A-Za-z_][A-Za-z0-9_]*/)!;
      out.push({ kind: "id", text: m[0], at: i });
      i += m[0].length;
    } else if ("[](),.:|+-{}".includes(c)) {
      out.push({ kind: "op", text: c, at: i });
      i++;
    } else {
      throw new TemplateError(`unexpected '${c}' at ${i}`);
    }
  }
  return out;
}

type Node =
  | { t: "lit"; v: Value }
  | { t: "name"; name: string }
  | { t: "list"; items: Node[] }
  | { t: "dict"; entries: [Node, Node][] }
  | { t: "attr"; of: Node; name: string }
  | { t: "index"; of: Node; index: Node }
  | { t: "slice"; of: Node; from?: Node; to?: Node }
  | { t: "call"; of: Node; name: string; args: Node[] }
  | { t: "filter"; of: Node; name: string; args: Node[] }
  | { t: "bin"; op: "+" | "-"; a: Node; b: Node };

class Parser {
  private i = 0;
  constructor(
    private readonly toks: Token[],
    private readonly src: string,
  ) {}

  private peek(text?: string): Token | undefined {
    const t = this.toks[this.i];
    return text === undefined || t?.text === text ? t : undefined;
  }
  private expect(text: string): void {
    if (this.toks[this.i]?.text !== text) throw new TemplateError(`expected '${text}' in '${this.src}'`);
    this.i++;
  }

  parseAll(): Node {
    const n = this.expr();
    if (this.i < this.toks.length) throw new TemplateError(`unexpected '${this.toks[this.i]!.text}' in '${this.src}'`);
    return n;
  }

  private expr(): Node {
    let n = this.sum();
    while (this.peek("|")) {
      this.i++;
      const name = this.ident();
      n = { t: "filter", of: n, name, args: this.peek("(") ? this.args() : [] };
    }
    return n;
  }

  private sum(): Node {
    let n = this.postfix();
    while (this.peek("+") || this.peek("-")) {
      const op = this.toks[this.i++]!.text as "+" | "-";
      n = { t: "bin", op, a: n, b: this.postfix() };
    }
    return n;
  }

  private ident(): string {
    const t = this.toks[this.i];
    if (t?.kind !== "id") throw new TemplateError(`expected a name in '${this.src}'`);
    this.i++;
    return t.text;
  }

  private args(): Node[] {
    this.expect("(");
    const out: Node[] = [];
    while (!this.peek(")")) {
      out.push(this.expr());
      if (!this.peek(")")) this.expect(",");
    }
    this.expect(")");
    return out;
  }

  private postfix(): Node {
    let n = this.primary();
    for (;;) {
      if (this.peek(".")) {
        this.i++;
        const name = this.ident();
        n = this.peek("(") ? { t: "call", of: n, name, args: this.args() } : { t: "attr", of: n, name };
      } else if (this.peek("[")) {
        this.i++;
        let from: Node | undefined;
        if (!this.peek(":")) from = this.expr();
        if (this.peek(":")) {
          this.i++;
          const to = this.peek("]") ? undefined : this.expr();
          this.expect("]");
          n = { t: "slice", of: n, from, to };
        } else {
          this.expect("]");
          n = { t: "index", of: n, index: from! };
        }
      } else return n;
    }
  }

  private primary(): Node {
    const t = this.toks[this.i];
    if (!t) throw new TemplateError(`'${this.src}' ends early`);
    if (t.kind === "str" || t.kind === "num") {
      this.i++;
      return { t: "lit", v: t.value! };
    }
    if (t.text === "-" && this.toks[this.i + 1]?.kind === "num") {
      this.i += 2;
      return { t: "lit", v: -(this.toks[this.i - 1]!.value as number) };
    }
    if (t.text === "[") {
      this.i++;
      const items: Node[] = [];
      while (!this.peek("]")) {
        items.push(this.expr());
        if (!this.peek("]")) this.expect(",");
      }
      this.expect("]");
      return { t: "list", items };
    }
    if (t.text === "{") {
      this.i++;
      const entries: [Node, Node][] = [];
      while (!this.peek("}")) {
        const k = this.expr();
        this.expect(":");
        entries.push([k, this.expr()]);
        if (!this.peek("}")) this.expect(",");
      }
      this.expect("}");
      return { t: "dict", entries };
    }
    if (t.text === "(") {
      this.i++;
      const n = this.expr();
      this.expect(")");
      return n;
    }
    if (t.kind === "id") {
      this.i++;
      if (t.text === "true" || t.text === "True") return { t: "lit", v: true };
      if (t.text === "false" || t.text === "False") return { t: "lit", v: false };
      if (t.text === "none" || t.text === "None") return { t: "lit", v: null };
      return { t: "name", name: t.text };
    }
    throw new TemplateError(`unexpected '${t.text}' in '${this.src}'`);
  }
}

/** Python's str.isspace set, so strip() removes what the harness's Python removes. */
const PY_SPACE = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000";

export function pyStrip(s: string, chars = PY_SPACE, left = true, right = true): string {
  let a = 0;
  let b = s.length;
  if (left) while (a < b && chars.includes(s[a]!)) a++;
  if (right) while (b > a && chars.includes(s[b - 1]!)) b--;
  return s.slice(a, b);
}

/** Python's repr of a value, for a list interpolated into text (Jinja prints lists that way). */
function pyRepr(v: Value): string {
  if (typeof v === "string") return `'${v.replace(/\\/g, "\\\\").replace(/'/g, "\\'").replace(/\n/g, "\\n")}'`;
  if (Array.isArray(v)) return `[${v.map(pyRepr).join(", ")}]`;
  return pyStr(v);
}

export function pyStr(v: Value): string {
  if (typeof v === "string") return v;
  if (typeof v === "number") return String(v);
  if (v === true) return "True";
  if (v === false) return "False";
  if (v === null) return "None";
  if (Array.isArray(v)) return pyRepr(v);
  return `{${Object.entries(v).map(([k, x]) => `${pyRepr(k)}: ${pyRepr(x)}`).join(", ")}}`;
}

function typeName(v: Value): string {
  return v === null ? "None" : Array.isArray(v) ? "list" : typeof v === "object" ? "dict" : typeof v === "number" ? "int" : typeof v === "boolean" ? "bool" : "str";
}

function str(v: Value, what: string): string {
  if (typeof v !== "string") throw new TemplateError(`${what} needs a string, got ${typeName(v)}`);
  return v;
}

function sliceOf<T extends string | Value[]>(v: T, from: number | undefined, to: number | undefined): T {
  const n = v.length;
  const norm = (x: number) => (x < 0 ? Math.max(0, n + x) : Math.min(n, x));
  return v.slice(from === undefined ? 0 : norm(from), to === undefined ? n : norm(to)) as T;
}

function method(target: Value, name: string, args: Value[]): Value {
  if (typeof target === "string") {
    const a0 = args[0];
    switch (name) {
      case "strip":
        return pyStrip(target, a0 == null ? undefined : str(a0, "strip"));
      case "lstrip":
        return pyStrip(target, a0 == null ? undefined : str(a0, "lstrip"), true, false);
      case "rstrip":
        return pyStrip(target, a0 == null ? undefined : str(a0, "rstrip"), false, true);
      case "lower":
        return target.toLowerCase();
      case "upper":
        return target.toUpperCase();
      case "capitalize":
        return capitalize(target);
      case "replace":
        return target.split(str(args[0]!, "replace")).join(str(args[1]!, "replace"));
      case "startswith":
        return target.startsWith(str(a0!, "startswith"));
      case "endswith":
        return target.endsWith(str(a0!, "endswith"));
      case "split":
        return a0 == null ? target.split(/\s+/).filter((s) => s !== "") : target.split(str(a0, "split"));
      case "join":
        if (!Array.isArray(a0)) throw new TemplateError("join needs a list");
        return a0.map((x) => str(x, "join")).join(target);
      case "index": {
        const i = target.indexOf(str(a0!, "index"));
        if (i < 0) throw new TemplateError(`substring ${pyRepr(a0!)} not found in ${pyRepr(target).slice(0, 60)}`);
        return [...target.slice(0, i)].length;
      }
    }
  }
  if (Array.isArray(target) && name === "index") {
    const i = target.findIndex((x) => x === args[0]);
    if (i < 0) throw new TemplateError(`${pyRepr(args[0] ?? null)} is not in list ${pyRepr(target).slice(0, 80)}`);
    return i;
  }
  throw new TemplateError(`${typeName(target)} has no method ${name}() here`);
}

/** Python's str.capitalize: first character upper case, the rest lower case. */
function capitalize(s: string): string {
  const chars = [...s];
  return chars.length === 0 ? s : chars[0]!.toUpperCase() + chars.slice(1).join("").toLowerCase();
}

function filter(v: Value, name: string, args: Value[]): Value {
  switch (name) {
    case "trim":
      return pyStrip(str(v, "trim"));
    case "lower":
    case "upper":
    case "capitalize":
    case "replace":
      return method(v, name, args);
    case "regex_replace":
      return str(v, "regex_replace").replace(new RegExp(str(args[0]!, "regex_replace"), "g"), str(args[1]!, "regex_replace"));
    case "length":
      if (typeof v === "string") return [...v].length;
      if (Array.isArray(v)) return v.length;
      throw new TemplateError(`length of ${typeName(v)}`);
    case "join":
      if (!Array.isArray(v)) throw new TemplateError("join needs a list");
      return v.map(pyStr).join(args[0] == null ? "" : str(args[0], "join"));
    case "string":
      return pyStr(v);
    case "int":
      return typeof v === "number" ? Math.trunc(v) : Number.parseInt(str(v, "int"), 10);
    case "map":
      if (!Array.isArray(v)) throw new TemplateError("map needs a list");
      return v.map((x) => filter(x, str(args[0]!, "map"), args.slice(1)));
    case "list":
      if (typeof v === "string") return [...v];
      if (!Array.isArray(v)) throw new TemplateError(`list of ${typeName(v)}`);
      return v;
    case "first":
    case "last":
      if (!Array.isArray(v) && typeof v !== "string") throw new TemplateError(`${name} of ${typeName(v)}`);
      return (name === "first" ? v[0] : v[v.length - 1]) ?? null;
  }
  throw new TemplateError(`unknown filter '${name}' (known: trim, lower, upper, capitalize, replace, regex_replace, length, join, string, int, map, list, first, last)`);
}

function evaluate(n: Node, row: Record<string, Value>): Value {
  switch (n.t) {
    case "lit":
      return n.v;
    case "name":
      if (!(n.name in row)) throw new MissingColumn(n.name);
      return row[n.name]!;
    case "list":
      return n.items.map((x) => evaluate(x, row));
    case "dict":
      return Object.fromEntries(n.entries.map(([k, v]) => [pyStr(evaluate(k, row)), evaluate(v, row)]));
    case "attr": {
      const of = evaluate(n.of, row);
      if (of && typeof of === "object" && !Array.isArray(of) && n.name in of) return of[n.name]!;
      throw new TemplateError(`${typeName(of)} has no field '${n.name}'`);
    }
    case "index": {
      const of = evaluate(n.of, row);
      const ix = evaluate(n.index, row);
      if ((typeof of === "string" || Array.isArray(of)) && typeof ix === "number") {
        const items = typeof of === "string" ? [...of] : of;
        const v = items[ix < 0 ? items.length + ix : ix];
        if (v === undefined) throw new TemplateError(`index ${ix} out of range (length ${items.length})`);
        return v;
      }
      if (of && typeof of === "object" && !Array.isArray(of)) {
        const key = pyStr(ix);
        if (!(key in of)) throw new TemplateError(`no key ${pyRepr(ix)}`);
        return of[key]!;
      }
      throw new TemplateError(`cannot index ${typeName(of)} with ${typeName(ix)}`);
    }
    case "slice": {
      const of = evaluate(n.of, row);
      const num = (x?: Node) => {
        if (!x) return undefined;
        const v = evaluate(x, row);
        if (typeof v !== "number") throw new TemplateError(`slice bounds must be integers, got ${typeName(v)}`);
        return v;
      };
      if (typeof of === "string") return sliceOf([...of], num(n.from), num(n.to)).join("");
      if (Array.isArray(of)) return sliceOf(of, num(n.from), num(n.to));
      throw new TemplateError(`cannot slice ${typeName(of)}`);
    }
    case "call":
      return method(evaluate(n.of, row), n.name, n.args.map((a) => evaluate(a, row)));
    case "filter":
      return filter(evaluate(n.of, row), n.name, n.args.map((a) => evaluate(a, row)));
    case "bin": {
      const a = evaluate(n.a, row);
      const b = evaluate(n.b, row);
      if (n.op === "+" && typeof a === "string" && typeof b === "string") return a + b;
      if (n.op === "+" && Array.isArray(a) && Array.isArray(b)) return [...a, ...b];
      if (typeof a === "number" && typeof b === "number") return n.op === "+" ? a + b : a - b;
      throw new TemplateError(`cannot ${n.op === "+" ? "add" : "subtract"} ${typeName(a)} and ${typeName(b)}`);
    }
  }
}

/** A template that names a column the row lacks. */
export class MissingColumn extends TemplateError {
  constructor(readonly column: string) {
    super(`no column '${column}'`);
    this.name = "MissingColumn";
  }
}

type Part = { text: string } | { expr: Node; src: string };

export interface Template {
  source: string;
  /** The columns the template reads (checked against the dataset before any row is scored). */
  columns: string[];
  render(row: Record<string, Value>): Value;
}

function namesIn(n: Node, out: Set<string>): void {
  switch (n.t) {
    case "name":
      out.add(n.name);
      return;
    case "list":
      n.items.forEach((x) => namesIn(x, out));
      return;
    case "dict":
      n.entries.forEach(([k, v]) => (namesIn(k, out), namesIn(v, out)));
      return;
    case "attr":
      namesIn(n.of, out);
      return;
    case "index":
      namesIn(n.of, out), namesIn(n.index, out);
      return;
    case "slice":
      namesIn(n.of, out);
      if (n.from) namesIn(n.from, out);
      if (n.to) namesIn(n.to, out);
      return;
    case "call":
    case "filter":
      namesIn(n.of, out);
      n.args.forEach((a) => namesIn(a, out));
      return;
    case "bin":
      namesIn(n.a, out), namesIn(n.b, out);
  }
}

/** Compiles a template; a syntax error throws TemplateError naming the template. */
export function compileTemplate(source: string): Template {
  const parts: Part[] = [];
  let i = 0;
  while (i < source.length) {
    const open = source.indexOf("{{", i);
    if (open < 0) {
      parts.push({ text: source.slice(i) });
      break;
    }
    if (open > i) parts.push({ text: source.slice(i, open) });
    const close = source.indexOf("}}", open + 2);
    if (close < 0) throw new TemplateError(`'{{' without '}}' in ${JSON.stringify(source)}`);
    const src = source.slice(open + 2, close).trim();
    if (src.startsWith("%") || source.slice(open, open + 2) === "{%") throw new TemplateError(`statements ({% … %}) are not supported`);
    parts.push({ expr: new Parser(tokenize(src), src).parseAll(), src });
    i = close + 2;
  }
  if (source.includes("{%")) throw new TemplateError(`statements ({% … %}) are not supported in ${JSON.stringify(source)}; write the value as one expression`);
  const columns = new Set<string>();
  for (const p of parts) if ("expr" in p) namesIn(p.expr, columns);
  return {
    source,
    columns: [...columns],
    render(row) {
      if (parts.length === 1 && "expr" in parts[0]!) return evaluate(parts[0].expr, row);
      return parts.map((p) => ("text" in p ? p.text : pyStr(evaluate(p.expr, row)))).join("");
    },
  };
}
