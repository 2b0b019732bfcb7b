/**
 * A tokenizer.json read and checked, and the interfaces every implementation shares. Kept apart from the JS
 * library (load.ts), so the native tokenizer's path (tokenize, build) starts without loading it.
 */
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

