/**
 * Reads a tokenizer.json into the spec the native BPE tokenizer takes, refusing every feature it does
 * not implement with a message that names it.
 */
export class UnsupportedTokenizer extends Error {}

export type StepSpec = { kind: "isolate_each" | "isolate_runs" | "optional_space_then_run"; chars: Uint32Array } | { kind: "trailing_space" | "digits" };

export interface NativeTokenizerSpec {
  vocabBytes: Buffer;
  vocabOffsets: Uint32Array;
  merges: Uint32Array;
  /** content: what the text must contain; bytes: what decoding gives back (see below). */
  added: { id: number; content: string; special: boolean; bytes: Buffer }[];
  steps: StepSpec[];
  whitespace: Uint32Array;
  numeric: Uint32Array;
}

/** GPT-2's byte ↔ printable-character map, which ByteLevel uses. */
function byteLevelChars(): Map<string, number> {
  const printable: number[] = [];
  for (let b = 33; b <= 126; b++) printable.push(b);
  for (let b = 161; b <= 172; b++) printable.push(b);
  for (let b = 174; b <= 255; b++) printable.push(b);
  const map = new Map<string, number>();
  let extra = 0;
  for (let b = 0; b < 256; b++) map.set(String.fromCodePoint(printable.includes(b) ? b : 256 + extra++), b);
  return map;
}

/** Code-point ranges (lo, hi pairs) of every character a Unicode property regex matches. */
function propertyRanges(re: RegExp): Uint32Array {
  const out: number[] = [];
  let start = -1;
  for (let cp = 0; cp <= 0x110000; cp++) {
    const hit = cp < 0x110000 && !(cp >= 0xd800 && cp <= 0xdfff) && re.test(String.fromCodePoint(cp));
    if (hit && start < 0) start = cp;
    if (!hit && start >= 0) {
      out.push(start, cp - 1);
      start = -1;
    }
  }
  return Uint32Array.from(out);
}

let tables: { whitespace: Uint32Array; numeric: Uint32Array } | undefined;
/** Unicode White_Space (as Oniguruma's \s) and numeric characters (Rust's char::is_numeric: Nd, Nl, No). */
function unicodeTables() {
  tables ??= { whitespace: propertyRanges(/^\p{White_Space}$/u), numeric: propertyRanges(/^\p{N}$/u) };
  return tables;
}

/** Parses the body of a character class such as `A-Za-zµÀ-Ö` into code-point ranges. */
function parseClass(body: string, pattern: string): Uint32Array {
  const cps = [...body];
  const out: number[] = [];
  const take = (i: number): [number, number] => {
    const c = cps[i]!;
    if (c === "\\") {
      const e = cps[i + 1];
      if (e === undefined || /[a-zA-Z0-9]/.test(e)) throw new UnsupportedTokenizer(`Split pattern ${JSON.stringify(pattern)}: escape \\${e ?? ""} inside a class`);
      return [e.codePointAt(0)!, i + 2];
    }
    if (c === "[" || c === "]") throw new UnsupportedTokenizer(`Split pattern ${JSON.stringify(pattern)}: nested or unescaped bracket in a class`);
    return [c.codePointAt(0)!, i + 1];
  };
  if (cps[0] === "^") throw new UnsupportedTokenizer(`Split pattern ${JSON.stringify(pattern)}: negated character class`);
  for (let i = 0; i < cps.length; ) {
    const [lo, next] = take(i);
    if (cps[next] === "-" && next + 1 < cps.length) {
      const [hi, after] = take(next + 1);
      if (hi < lo) throw new UnsupportedTokenizer(`Split pattern ${JSON.stringify(pattern)}: reversed range`);
      out.push(lo, hi);
      i = after;
    } else {
      out.push(lo, lo);
      i = next;
    }
  }
  return Uint32Array.from(out);
}

/** The Split regexes this tokenizer implements, as scanner steps. */
function splitStep(pattern: string): StepSpec {
  let m: RegExpMatchArray | null;
  if (pattern === "\\s+$") return { kind: "trailing_space" };
  if ((m = pattern.match(/^\\s\?\[(.+)\]\+$/su))) return { kind: "optional_space_then_run", chars: parseClass(m[1]!, pattern) };
  if ((m = pattern.match(/^\[(.+)\]\+$/su))) return { kind: "isolate_runs", chars: parseClass(m[1]!, pattern) };
  if ((m = pattern.match(/^\[(.+)\]$/su))) return { kind: "isolate_each", chars: parseClass(m[1]!, pattern) };
  throw new UnsupportedTokenizer(`Split pattern ${JSON.stringify(pattern)} (only [class], [class]+, \\s?[class]+ and \\s+$ are implemented)`);
}

export function nativeTokenizerSpec(json: any): NativeTokenizerSpec {
  const model = json?.model;
  if (model?.type !== "BPE") throw new UnsupportedTokenizer(`model type ${model?.type} (only BPE)`);
  for (const [key, ok] of [
    ["dropout", model.dropout == null],
    ["byte_fallback", !model.byte_fallback],
    ["continuing_subword_prefix", !model.continuing_subword_prefix],
    ["end_of_word_suffix", !model.end_of_word_suffix],
    ["ignore_merges", !model.ignore_merges],
  ] as const) {
    if (!ok) throw new UnsupportedTokenizer(`BPE option ${key}`);
  }
  const normalizer = json.normalizer;
  if (normalizer && !(normalizer.type === "Sequence" && normalizer.normalizers?.length === 0)) throw new UnsupportedTokenizer(`normalizer ${normalizer.type}`);
  if (json.decoder && json.decoder.type !== "ByteLevel") throw new UnsupportedTokenizer(`decoder ${json.decoder.type}`);
  const pre = json.pre_tokenizer;
  const list: any[] = pre?.type === "Sequence" ? pre.pretokenizers : pre ? [pre] : [];
  const steps: StepSpec[] = [];
  list.forEach((step, i) => {
    const last = i === list.length - 1;
    if (step.type === "Split") {
      if (step.behavior !== "Isolated" || step.invert) throw new UnsupportedTokenizer(`Split behavior ${step.behavior}${step.invert ? " inverted" : ""}`);
      const pattern = step.pattern?.Regex ?? step.pattern?.String;
      if (typeof pattern !== "string") throw new UnsupportedTokenizer("Split without a pattern");
      if (step.pattern.String !== undefined) throw new UnsupportedTokenizer("Split on a literal string");
      steps.push(splitStep(pattern));
    } else if (step.type === "Digits") {
      if (!step.individual_digits) throw new UnsupportedTokenizer("Digits without individual_digits");
      steps.push({ kind: "digits" });
    } else if (step.type === "ByteLevel") {
      if (!last || step.use_regex || step.add_prefix_space) throw new UnsupportedTokenizer("ByteLevel pre-tokenizer with its own regex, a prefix space, or not last");
    } else {
      throw new UnsupportedTokenizer(`pre-tokenizer ${step.type}`);
    }
  });
  if (list[list.length - 1]?.type !== "ByteLevel") throw new UnsupportedTokenizer("a pre-tokenizer sequence that does not end in ByteLevel");

  const chars = byteLevelChars();
  // Typed arrays and char codes rather than a Buffer and a Map lookup per token: this runs at every start of
  // tokenize, build and eval, over 100K tokens and merges (1.1 s before, a fraction of that now).
  const byteOf = new Int16Array(512).fill(-1);
  for (const [c, b] of chars) byteOf[c.charCodeAt(0)] = b;
  const vocab = model.vocab as Record<string, number>;
  let size = 0;
  let chars16 = 0;
  for (const token in vocab) {
    size = Math.max(size, vocab[token]! + 1);
    chars16 += token.length;
  }
  const scratch = new Uint8Array(chars16);
  const start = new Uint32Array(size);
  const length = new Uint32Array(size);
  let at = 0;
  for (const token in vocab) {
    const id = vocab[token]!;
    start[id] = at;
    for (let i = 0; i < token.length; i++) {
      const code = token.charCodeAt(i);
      const b = code < 512 ? byteOf[code]! : -1;
      if (b < 0) throw new UnsupportedTokenizer(`vocab token ${JSON.stringify(token)} has a character outside the byte-level alphabet`);
      scratch[at++] = b;
    }
    length[id] = at - start[id]!;
  }
  const offsets = new Uint32Array(size + 1);
  for (let i = 0; i < size; i++) offsets[i + 1] = offsets[i]! + length[i]!;
  const vocabBytes = Buffer.alloc(offsets[size]!);
  for (let i = 0; i < size; i++) if (length[i]) vocabBytes.set(scratch.subarray(start[i]!, start[i]! + length[i]!), offsets[i]!);
  const mergeList = model.merges as (string | [string, string])[];
  const merges = new Uint32Array(mergeList.length * 3);
  for (let r = 0; r < mergeList.length; r++) {
    const m = mergeList[r]!;
    const [a, b] = typeof m === "string" ? (m.split(" ", 2) as [string, string]) : m;
    const ia = vocab[a], ib = vocab[b], ic = vocab[a + b];
    if (ia === undefined || ib === undefined || ic === undefined) throw new UnsupportedTokenizer(`merge ${JSON.stringify(m)} names tokens outside the vocabulary`);
    merges[3 * r] = ia;
    merges[3 * r + 1] = ib;
    merges[3 * r + 2] = ic;
  }
  const added = ((json.added_tokens ?? []) as any[]).map((t) => {
    if (t.lstrip || t.rstrip || t.single_word) throw new UnsupportedTokenizer(`added token ${JSON.stringify(t.content)} with lstrip/rstrip/single_word`);
    // Hugging Face's ByteLevel decoder maps a token through the byte alphabet when every character is in
    // it (so "Á" decodes to byte 0xC1, invalid alone), and keeps its UTF-8 otherwise.
    const mapped = [...(t.content as string)].map((c) => chars.get(c));
    const bytes = mapped.every((b) => b !== undefined) ? Buffer.from(mapped as number[]) : Buffer.from(t.content as string, "utf8");
    return { id: t.id as number, content: t.content as string, special: !!t.special, bytes };
  });
  return { vocabBytes, vocabOffsets: offsets, merges, added, steps, ...unicodeTables() };
}
