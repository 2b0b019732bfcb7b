/**
 * The packed token stream, assembled in order without reading documents in shuffled order.
 *
 * Reading each picked document where tokenisation left it is a random read per document; once the tokens outgrow the
 * page cache those reads slow pack down as the corpus grows (measured at 3.2 GB of text: 10.2 us a document cached,
 * 40.6 us evicted). Instead the stream is built like an external distribution sort, with every read and write
 * sequential:
 *  - scatter: the chunk files are read once, in file order; each picked document's tokens (BOS, ids, EOS), cut at
 *    the end of the stream, go as records (stream position, count, ids) to the bin file of the stream range they fall in;
 *  - gather: bin by bin, in stream order, a bin's records are placed into a buffer of the bin's range, which is then
 *    handed on whole. A bin larger than the buffer is scattered again into smaller bins first, so a build of any size
 *    needs one buffer of memory and, on disk, the bins (about the shards' size; each deleted once gathered).
 * A stream that fits the buffer is gathered straight from the chunk files, with no bin files. Which documents the
 * chunks' scatter takes, and where they go, is read from the plan a block of documents at a time (plan-tables.ts).
 * Records carry their absolute position, so the order in which they are written never matters: the bytes are fixed by
 * the stream alone.
 */
import { mkdirSync, rmSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { RuntimeFailure } from "../../util/errors.ts";
import { binSource, scatterToBins, type RecordSource } from "./pack-bins.ts";
import type { TokenReader } from "./tokenize.ts";

/** Picks of a block of documents, sorted by read position, then by start. */
export interface PickRun {
  /** per pick: its document's read position (TokenReader) */
  readPos: Float64Array;
  /** per pick: its first position in the stream */
  start: Float64Array;
  /** per pick: its length with specials */
  length: Uint32Array;
}

/** Where the picked documents sit in the stream (plan-tables.ts lays them out). */
export interface StreamLayout {
  /** positions [0, total) are written; the rest is the dropped tail */
  total: number;
  bosId: number | undefined;
  eosId: number;
  /** The picks that start before `total` of the documents at read positions [from, to); called with ranges that only move forward. */
  picksAt(from: number, to: number): Promise<PickRun>;
}

export interface StreamOptions {
  /** the folder for bin files (removed when done) */
  workDir: string;
  /** tokens one gather buffer holds: the stream goes to bins when it is longer */
  bufferTokens: number;
  /** most bins one scatter writes to */
  fanout: number;
  /** bytes of write buffer each scatter has, shared between its bins */
  writeBufferBytes: number;
}

/** Memory and fan-out for a pack with `bytes` to spend on token data: half the gather buffer, half the scatter's writes. */
export function streamOptionsFor(bytes: number, workDir: string): StreamOptions {
  const half = Math.max(4 << 20, Math.floor(bytes / 2));
  return { workDir, bufferTokens: Math.floor(half / 4), fanout: 256, writeBufferBytes: half };
}

/**
 * Calls `emit` with the stream's tokens in order, as consecutive views covering [0, layout.total); each view is valid
 * until the returned promise of the call resolves.
 */
export async function assembleStream(reader: TokenReader, layout: StreamLayout, options: StreamOptions, emit: (tokens: Uint32Array) => Promise<void>): Promise<void> {
  if (layout.total === 0) return;
  await assembleRange(chunkSource(reader, layout), 0, layout.total, options, emit);
}

/**
 * Calls `emit` with the tokens of the stream range [lo, hi) in order, from a source whose records cover exactly that
 * range (the chunk files, or a distributed merge's bins of one pack job): in memory when the range fits the buffer,
 * else through bin files in `options.workDir`, which is removed when done.
 */
export async function assembleRange(source: RecordSource, lo: number, hi: number, options: StreamOptions, emit: (tokens: Uint32Array) => Promise<void>): Promise<void> {
  if (hi <= lo) return;
  const buffer = new Uint32Array(Math.min(options.bufferTokens, hi - lo));
  rmSync(options.workDir, { recursive: true, force: true });
  let bins = 0;
  const removing: Promise<void>[] = [];
  // `consumed` runs once the source is read through, so a bin scattered again is being deleted before its parts are gathered.
  const gather = async (source: RecordSource, lo: number, hi: number, consumed: () => void): Promise<void> => {
    if (hi - lo <= buffer.length) {
      const out = buffer.subarray(0, hi - lo);
      let placed = 0;
      await source((position, ids) => {
        if (position < lo || position + ids.length > hi) throw new RuntimeFailure(`pack: a record at ${position} (${ids.length} tokens) lies outside its bin [${lo}, ${hi}); rerun the build`);
        out.set(ids, position - lo);
        placed += ids.length;
      });
      if (placed !== hi - lo) throw new RuntimeFailure(`pack: the bin [${lo}, ${hi}) received ${placed} of its ${hi - lo} tokens; rerun the build`);
      consumed();
      await emit(out);
      return;
    }
    const { count, width } = binsOf(hi - lo, buffer.length, options.fanout);
    mkdirSync(options.workDir, { recursive: true });
    const files = Array.from({ length: count }, () => join(options.workDir, `bin-${bins++}`));
    const edges = Array.from({ length: count + 1 }, (_, b) => Math.min(hi, lo + b * width));
    await scatterToBins(source, edges, files, options.writeBufferBytes);
    consumed();
    for (let b = 0; b < count; b++) {
      const file = files[b]!;
      // Unlinking a bin frees its pages, a quarter of a second for a 200 MB bin: it runs on libuv's threads.
      await gather(binSource(file), edges[b]!, edges[b + 1]!, () => removing.push(rm(file, { force: true })));
    }
  };
  try {
    await gather(source, lo, hi, () => {});
  } finally {
    await Promise.allSettled(removing);
    rmSync(options.workDir, { recursive: true, force: true });
  }
}

/** How a range of `tokens` splits into bins: at most `fanout`, each at most `buffer` wide where the fan-out allows, none empty. */
export function binsOf(tokens: number, buffer: number, fanout: number): { count: number; width: number } {
  const width = Math.ceil(tokens / Math.min(fanout, Math.ceil(tokens / buffer)));
  return { count: Math.ceil(tokens / width), width };
}

/** Every picked document's tokens, chunk file by chunk file: one record per pick, cut at the stream's end. */
export function chunkSource(reader: TokenReader, layout: StreamLayout): RecordSource {
  const lead = layout.bosId !== undefined ? 1 : 0;
  let scratch = new Uint32Array(1 << 16);
  return async (visit) => {
    let readPos = 0;
    for (let c = 0; c < reader.chunkCount; c++) {
      const chunk = reader.readChunk(c);
      const docs = chunk.lengths.length;
      const picks = await layout.picksAt(readPos, readPos + docs);
      let j = 0;
      for (let i = 0, at = 0; i < docs; at += chunk.lengths[i]!, i++, readPos++) {
        if (j >= picks.readPos.length || picks.readPos[j] !== readPos) continue;
        const body = chunk.ids.subarray(at, at + chunk.lengths[i]!);
        const length = body.length + lead + 1;
        if (scratch.length < length) scratch = new Uint32Array(Math.max(length, 2 * scratch.length));
        if (lead) scratch[0] = layout.bosId!;
        scratch.set(body, lead);
        scratch[length - 1] = layout.eosId;
        for (; j < picks.readPos.length && picks.readPos[j] === readPos; j++) {
          if (picks.length[j] !== length) throw new RuntimeFailure(`pack: the document at read position ${readPos} has ${length} tokens in its chunk and ${picks.length[j]} in the plan; rerun the build (or the partition that tokenised it)`);
          const start = picks.start[j]!;
          const wait = visit(start, scratch.subarray(0, Math.min(length, layout.total - start)));
          if (wait) await wait;
        }
      }
      if (j !== picks.readPos.length) throw new RuntimeFailure(`pack: the plan picks a document at read position ${picks.readPos[j]}, which chunk ${c} does not hold; rerun the build`);
    }
  };
}

