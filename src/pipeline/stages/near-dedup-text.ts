/**
 * What MinHash compares (near-dedup.ts): the text simplified as datatrove's simplify_text does it, then words.
 *   - NFKC, lower case; every Unicode punctuation (\p{P}) and symbol (\p{S}) character becomes a space;
 *     whitespace runs collapse to one space.
 *   - Words are what spaces separate, except that each CJK character (Han, kana, Hangul) is a word of its own, so
 *     Chinese and Japanese text, written without spaces, still has shingles.
 * The fixture's truth.json (fixture/near-dups) computes its Jaccard values this way; test/pipeline/stages/
 * near-dedup.test.ts checks all 90 of them.
 */
import { isAscii } from "node:buffer";

/** What a word is, as the manifest states it. */
export const NEAR_DUPLICATE_WORDS =
  "text in NFKC, lower-cased, Unicode punctuation and symbols as spaces, whitespace collapsed; words split at spaces, and each CJK character (Han, kana, Hangul) is a word";

/** CJK characters, each one word: Han (with extensions A–F and compatibility), kana, Hangul syllables. */
const CJK = /[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af\u{20000}-\u{2fa1f}]/gu;
const PUNCTUATION_OR_SYMBOL = /[\p{P}\p{S}]/gu;
const WHITESPACE = /\s+/gu;

const NON_ASCII = /[^\x00-\x7f]/;

/**
 * A text as the addon takes it (cx_minhash_bands, cx_shingle_jaccard): NFKC and lower case where it holds non-ASCII,
 * which need ICU; ASCII text, unchanged by NFKC, goes as it is, and the addon lower-cases it and makes the words
 * exactly as shingleWords does.
 */
export function prepareForShingles(text: string): string {
  return NON_ASCII.test(text) ? text.normalize("NFKC").toLowerCase() : text;
}

const utf8 = new TextDecoder();

/** prepareForShingles for a text's UTF-8 bytes: ASCII bytes as they are, other text decoded and prepared. */
export function prepareBytesForShingles(bytes: Uint8Array): Uint8Array | string {
  return isAscii(bytes) ? bytes : prepareForShingles(utf8.decode(bytes));
}

/** The words of a text, separated by single spaces: the definition the addon follows, and the tests' reference. */
export function shingleWords(text: string): string {
  return text.normalize("NFKC").toLowerCase().replace(PUNCTUATION_OR_SYMBOL, " ").replace(CJK, " $& ").replace(WHITESPACE, " ").trim();
}

/** The set of `ngram`-word shingles of shingleWords' output; a text of fewer words is one shingle of them all. */
export function shingleSet(words: string, ngram: number): Set<string> {
  const list = words === "" ? [] : words.split(" ");
  const out = new Set<string>();
  if (list.length === 0) return out;
  const n = Math.min(ngram, list.length);
  for (let i = 0; i + n <= list.length; i++) out.add(list.slice(i, i + n).join(" "));
  return out;
}

/** Jaccard similarity of two shingle sets (1 for two empty sets). */
export function jaccard(a: Set<string>, b: Set<string>): number {
  if (a.size === 0 && b.size === 0) return 1;
  const [small, large] = a.size <= b.size ? [a, b] : [b, a];
  let shared = 0;
  for (const s of small) if (large.has(s)) shared++;
  return shared / (a.size + b.size - shared);
}
