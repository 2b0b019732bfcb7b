import { readFile } from "node:fs/promises";
import { Tokenizer } from "@huggingface/tokenizers";
import { RuntimeFailure } from "../util/errors.ts";
import { parseTokenizerJson, type TextTokenizer } from "./json.ts";

export { parseTokenizerJson, type TextTokenizer, type TokenizerInfo } from "./json.ts";

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
