import { loadAddon } from "../native/addon.ts";
import type { TextTokenizer } from "./json.ts";
import { nativeTokenizerSpec, type NativeTokenizerSpec } from "./spec.ts";

export interface BatchTokenizer {
  /** Ids of many documents at once: all ids concatenated, and each document's count. */
  encodeBatch(texts: string[]): Promise<{ ids: Uint32Array; lengths: Uint32Array }>;
}

interface NativeTokenizerObject {
  encode(text: string): Uint32Array;
  encodeBatch(texts: string[]): Promise<{ ids: Uint32Array; lengths: Uint32Array }>;
  decode(ids: Uint32Array, skipSpecial: boolean): string;
}

/**
 * The native byte-level BPE tokenizer (native/src/tokenizer), built from a tokenizer.json already parsed
 * and checked by tokenizerFromText. Throws UnsupportedTokenizer naming a feature it does not implement.
 */
export function nativeTokenizer(json: unknown, info: Omit<TextTokenizer, "encode" | "decode">, threads: number): TextTokenizer & BatchTokenizer {
  return nativeTokenizerFromSpec(nativeTokenizerSpec(json), info, threads);
}

/** The native tokenizer over a spec already built (nativeTokenizerSpec, or the on-disk cache of one). */
export function nativeTokenizerFromSpec(spec: NativeTokenizerSpec, info: Omit<TextTokenizer, "encode" | "decode">, threads: number): TextTokenizer & BatchTokenizer {
  const addon = loadAddon() as unknown as { Tokenizer: new (spec: unknown, threads: number) => NativeTokenizerObject };
  const tok = new addon.Tokenizer(spec, Math.max(1, threads));
  return {
    ...info,
    encode: (text) => Array.from(tok.encode(text)),
    decode: (ids) => tok.decode(Uint32Array.from(ids), false),
    encodeBatch: (texts) => tok.encodeBatch(texts),
  };
}
