/** Token chunk files as tokenisation writes them, for tests of what reads them (the token store, pack). */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { StreamLayout } from "../../src/pipeline/stages/pack-stream.ts";
import { sliceRun } from "../../src/pipeline/mixture/plan-tables.ts";
import { CHUNK_DOCS, encodeChunk, TokenStore } from "../../src/pipeline/stages/tokenize.ts";

/** Chunk files in `dir` for the given documents' ids, by ord, and a store over them. */
export function chunkStore(dir: string, tag: string, docs: readonly Uint32Array[]): TokenStore {
  const files: string[] = [];
  const docCounts: number[] = [];
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
    docCounts.push(chunk.length);
    idCounts.push(ids.length);
  }
  return new TokenStore(files, docCounts, idCounts);
}

/** `count` documents of pseudo-random lengths below `maxLength` (some empty) and ids, from `seed`. */
export function randomDocs(count: number, maxLength: number, seed: number): Uint32Array[] {
  const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8; // the high bits: an LCG's low bits repeat
  return Array.from({ length: count }, () => Uint32Array.from({ length: next() % maxLength }, () => next() % 100015));
}

/**
 * A stream layout held in arrays, as plan-tables.ts reads one from the work database: per pick in stream order, its
 * document's read position (a build's ord), start and length with specials.
 */
export function layoutInMemory(picks: { ord: ArrayLike<number>; start: ArrayLike<number>; length: ArrayLike<number> }, total: number, bosId: number | undefined, eosId: number): StreamLayout {
  const order = Array.from({ length: picks.ord.length }, (_, k) => k)
    .filter((k) => picks.start[k]! < total)
    .sort((a, b) => picks.ord[a]! - picks.ord[b]! || picks.start[a]! - picks.start[b]!);
  const run = {
    readPos: Float64Array.from(order, (k) => picks.ord[k]!),
    start: Float64Array.from(order, (k) => picks.start[k]!),
    length: Uint32Array.from(order, (k) => picks.length[k]!),
  };
  return { total, bosId, eosId, picksAt: async (from, to) => sliceRun(run, from, to) };
}
