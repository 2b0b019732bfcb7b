import { readFile } from "node:fs/promises";
import { Tokenizer } from "@huggingface/tokenizers";
import { RuntimeFailure } from "../util/errors.ts";
import { sha256Hex } from "../util/hash.ts";

export interface TokenizerInfo {
  sha256: string;
  eosId: number;
  bosId: number;
  vocabSize: number;
}

export interface TextTokenizer extends TokenizerInfo {
  /** Ids of `text` without special tokens, as Hugging Face's Rust `tokenizers` gives them. */
  encode(text: string): number[];
  decode(ids: readonly number[]): string;
}

const EOS_CONTENT = "<｜end▁of▁sentence｜>";
const BOS_CONTENT = "<｜begin▁of▁sentence｜>";

/**
 * The JS library's Digits pre-tokenizer treats only ASCII 0-9 as digits, while Rust's uses
 * `char::is_numeric` (so "½", "²", "٣" are split one by one there). A Split on `\p{N}` (Isolated) is the
 * same rule, so we swap it in; ids then equal the Rust reference's.
 */
export function patchForRustParity(json: any): any {
  const fix = (step: any): any =>
    step?.type === "Digits" && step.individual_digits
      ? { type: "Split", pattern: { Regex: "\\p{N}" }, behavior: "Isolated", invert: false }
      : step;
  const pre = json.pre_tokenizer;
  if (pre?.type === "Sequence") pre.pretokenizers = pre.pretokenizers.map(fix);
  else json.pre_tokenizer = fix(pre);
  return json;
}

function specialId(json: any, content: string, fallback: string): number {
  const added = (json.added_tokens ?? []) as { id: number; content: string }[];
  const hit = added.find((t) => t.content === content) ?? added.find((t) => t.content === fallback);
  if (!hit) throw new RuntimeFailure(`tokenizer.json has no '${content}' added token`);
  return hit.id;
}

/** Parses and checks a tokenizer.json; shared by every implementation. */
export function parseTokenizerJson(text: string, where: string): { json: any; info: TokenizerInfo } {
  let json: any;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new RuntimeFailure(`${where}: not valid JSON (${(error as Error).message})`);
  }
  if (json?.model?.type !== "BPE") throw new RuntimeFailure(`${where}: expected a BPE tokenizer.json, got model type ${json?.model?.type}`);
  const eosId = specialId(json, EOS_CONTENT, "</s>");
  const bosId = specialId(json, BOS_CONTENT, "<s>");
  const vocabSize = Object.keys(json.model.vocab).length + (json.added_tokens?.length ?? 0);
  return { json, info: { sha256: sha256Hex(text), eosId, bosId, vocabSize } };
}

/** The pure-JS implementation (@huggingface/tokenizers), patched for parity with the Rust reference. */
export function tokenizerFromText(text: string, where: string): TextTokenizer {
  const { json, info } = parseTokenizerJson(text, where);
  const tokenizer = new Tokenizer(patchForRustParity(structuredClone(json)), {});
  return {
    ...info,
    encode: (t) => tokenizer.encode(t, { add_special_tokens: false }).ids,
    // No clean-up of "tokenization spaces": DeepSeek's config turns it off, and decoded text must be exactly
    // the bytes the ids stand for (the library's default turns "' '.join" into "''.join").
    decode: (ids) => (ids.length === 0 ? "" : tokenizer.decode([...ids], { skip_special_tokens: false, clean_up_tokenization_spaces: false })),
  };
}

export async function loadTokenizer(path: string): Promise<TextTokenizer> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new RuntimeFailure(`${path}: cannot read tokenizer (${(error as NodeJS.ErrnoException).code ?? error})`);
  }
  return tokenizerFromText(text, path);
}
