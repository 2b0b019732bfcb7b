/** Token chunk files as tokenisation writes them, for tests of what reads them (the token store, pack). */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { CHUNK_DOCS, encodeChunk, TokenStore } from "../../src/pipeline/tokenize.ts";

/** Chunk files in `dir` for the given documents' ids, by ord, and a store over them. */
export function chunkStore(dir: string, tag: string, docs: readonly Uint32Array[]): TokenStore {
  const files: string[] = [];
  const idCounts: number[] = [];
  const lengths = Uint32Array.from(docs, (d) => d.length);
  for (let first = 0; first < docs.length; first += CHUNK_DOCS) {
    const chunk = docs.slice(first, first + CHUNK_DOCS);
    const ids = new Uint32Array(chunk.reduce((a, d) => a + d.length, 0));
    let at = 0;
    for (const d of chunk) {
      ids.set(d, at);
      at += d.length;
    }
    const file = join(dir, `${tag}-${files.length}.tok`);
    writeFileSync(file, encodeChunk(lengths.subarray(first, first + chunk.length), ids));
    files.push(file);
    idCounts.push(ids.length);
  }
  return new TokenStore(files, idCounts, lengths);
}

/** `count` documents of pseudo-random lengths below `maxLength` (some empty) and ids, from `seed`. */
export function randomDocs(count: number, maxLength: number, seed: number): Uint32Array[] {
  const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8; // the high bits: an LCG's low bits repeat
  return Array.from({ length: count }, () => Uint32Array.from({ length: next() % maxLength }, () => next() % 100015));
}
