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
import { closeSync, mkdirSync, openSync, readSync, rmSync, write } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { explainWriteError } from "../util/atomic.ts";
import { RuntimeFailure } from "../util/errors.ts";
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

const HEADER_WORDS = 3; // position (low, high 32 bits), count
const READ_BLOCK_WORDS = 1 << 21; // 8 MiB reads

/**
 * Takes one record. A promise returned means "wait before the next record" (a bin writer whose spare buffer is still
 * being written); `ids` must stay unchanged until it resolves.
 */
type Visit = (position: number, ids: Uint32Array) => void | Promise<void>;
/** Something that yields the stream's records, each once: the chunk files, or a bin file. */
type RecordSource = (visit: Visit) => Promise<void>;

/**
 * Calls `emit` with the stream's tokens in order, as consecutive views covering [0, layout.total); each view is valid
 * until the returned promise of the call resolves.
 */
export async function assembleStream(reader: TokenReader, layout: StreamLayout, options: StreamOptions, emit: (tokens: Uint32Array) => Promise<void>): Promise<void> {
  if (layout.total === 0) return;
  const buffer = new Uint32Array(Math.min(options.bufferTokens, layout.total));
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
    const writers: BinWriter[] = [];
    try {
      // Each bin has two buffers of half its share: one fills while the other is written (the write runs on libuv's
      // threads, so the disk works while this thread reads and routes the next records).
      for (const f of files) writers.push(new BinWriter(f, Math.max(32 << 10, Math.floor(options.writeBufferBytes / count / 2))));
      // Routes a record's tokens from `from` on to their bins. It stays synchronous unless a bin writer must wait
      // for its spare buffer; then it returns a promise that carries on from there.
      const route = (position: number, ids: Uint32Array, from: number): Promise<void> | undefined => {
        for (let at = from; at < ids.length; ) {
          const b = Math.floor((position + at - lo) / width);
          const take = Math.min(ids.length - at, lo + (b + 1) * width - (position + at));
          const wait = writers[b]!.append(position + at, ids.subarray(at, at + take));
          at += take;
          if (wait) return wait.then(() => route(position, ids, at));
        }
        return undefined;
      };
      await source((position, ids) => {
        if (position < lo || position + ids.length > hi) throw new RuntimeFailure(`pack: a record at ${position} (${ids.length} tokens) lies outside its bin [${lo}, ${hi}); rerun the build`);
        return route(position, ids, 0);
      });
      // Every close settles before any file is abandoned, so no write is in flight on a file being closed.
      const closed = await Promise.allSettled(writers.map((w) => w.close()));
      const failed = closed.find((r) => r.status === "rejected");
      if (failed) throw failed.reason;
    } finally {
      for (const w of writers) await w.abandon();
    }
    consumed();
    for (let b = 0; b < count; b++) {
      const file = files[b]!;
      // Unlinking a bin frees its pages, a quarter of a second for a 200 MB bin: it runs on libuv's threads.
      await gather(binSource(file), lo + b * width, Math.min(hi, lo + (b + 1) * width), () => removing.push(rm(file, { force: true })));
    }
  };
  try {
    await gather(chunkSource(reader, layout), 0, layout.total, () => {});
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
function chunkSource(reader: TokenReader, layout: StreamLayout): RecordSource {
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

/** A bin file's records, read front to back a block at a time; a record cut by a block's end is visited in parts. */
function binSource(file: string): RecordSource {
  return async (visit) => {
    const bytes = new Uint8Array(4 * READ_BLOCK_WORDS);
    const words = new Uint32Array(bytes.buffer);
    const fd = openSync(file, "r");
    try {
      let filePos = 0;
      let carry = 0; // words of an incomplete header kept at the block's start
      let pending = 0; // ids of the current record still to come
      let position = 0; // where they go
      for (;;) {
        const n = readSync(fd, bytes, 4 * carry, bytes.length - 4 * carry, filePos);
        filePos += n;
        if (n % 4 !== 0) throw new RuntimeFailure(`${file}: cut inside a token; rerun the build`);
        const end = carry + n / 4;
        let i = 0;
        for (;;) {
          if (pending > 0) {
            const take = Math.min(pending, end - i);
            if (take === 0) break;
            const wait = visit(position, words.subarray(i, i + take));
            if (wait) await wait;
            position += take;
            pending -= take;
            i += take;
            continue;
          }
          if (end - i < HEADER_WORDS) break;
          position = words[i]! + words[i + 1]! * 2 ** 32;
          pending = words[i + 2]!;
          i += HEADER_WORDS;
        }
        carry = end - i;
        words.copyWithin(0, i, end);
        if (n === 0) {
          if (carry !== 0 || pending !== 0) throw new RuntimeFailure(`${file}: ends inside a record; rerun the build`);
          return;
        }
      }
    } finally {
      closeSync(fd);
    }
  };
}

/**
 * Appends records to one bin file through two buffers (native byte order: a bin lives only within one pack): when one
 * is full it is written in the background and the other fills. At most one write is in flight, so the file's records
 * stay whole and in order; a failed write is thrown by the next append or by close.
 */
class BinWriter {
  private fd: number | undefined;
  private words: Uint32Array;
  private spare: Uint32Array;
  private used = 0;
  private filePos = 0;
  private writing: Promise<void> | undefined;
  private failure: unknown;

  constructor(
    readonly file: string,
    bufferBytes: number,
  ) {
    this.fd = openSync(file, "w");
    this.words = new Uint32Array(bufferBytes >> 2);
    this.spare = new Uint32Array(bufferBytes >> 2);
  }

  /** Adds a record; returns a promise only when the caller must wait (the spare buffer is still being written) before the next. */
  append(position: number, ids: Uint32Array): Promise<void> | undefined {
    if (this.failure !== undefined) throw this.failure;
    if (this.used + HEADER_WORDS + ids.length > this.words.length && this.used > 0) {
      if (this.writing) return this.writing.then(() => this.append(position, ids));
      this.startWrite();
    }
    if (HEADER_WORDS + ids.length > this.words.length) return this.appendLong(position, ids);
    this.words[this.used] = position % 2 ** 32;
    this.words[this.used + 1] = Math.floor(position / 2 ** 32);
    this.words[this.used + 2] = ids.length;
    this.words.set(ids, this.used + HEADER_WORDS);
    this.used += HEADER_WORDS + ids.length;
    return undefined;
  }

  /** Writes what is buffered and closes the file. */
  async close(): Promise<void> {
    await this.writing;
    if (this.failure !== undefined) throw this.failure;
    if (this.used > 0) {
      this.startWrite();
      await this.writing;
      if (this.failure !== undefined) throw this.failure;
    }
    this.closeFile();
  }

  /** Closes the file whatever happened (a failing pack removes its bin folder). */
  async abandon(): Promise<void> {
    while (this.writing) await this.writing;
    this.closeFile();
  }

  /** A record longer than a buffer: its header, then its ids straight from the caller's view (which waits for it). */
  private appendLong(position: number, ids: Uint32Array): Promise<void> {
    const before = this.writing;
    const header = Uint32Array.of(position % 2 ** 32, Math.floor(position / 2 ** 32), ids.length);
    const done = this.track(
      (async () => {
        await before;
        if (this.failure !== undefined) return;
        await this.writeAt(new Uint8Array(header.buffer));
        await this.writeAt(new Uint8Array(ids.buffer, ids.byteOffset, ids.byteLength));
      })(),
    );
    return done.then(() => {
      if (this.failure !== undefined) throw this.failure;
    });
  }

  private startWrite(): void {
    const full = this.words;
    const bytes = new Uint8Array(full.buffer, 0, 4 * this.used);
    this.words = this.spare;
    this.spare = full;
    this.used = 0;
    this.track(this.writeAt(bytes));
  }

  /** Makes `write` the one in flight: a failure is kept for the next append or close. */
  private track(write: Promise<void>): Promise<void> {
    const settled: Promise<void> = write.then(
      () => {
        if (this.writing === settled) this.writing = undefined;
      },
      (error) => {
        this.failure ??= error;
        if (this.writing === settled) this.writing = undefined;
      },
    );
    this.writing = settled;
    return settled;
  }

  private async writeAt(bytes: Uint8Array): Promise<void> {
    const fd = this.fd!;
    const at = this.filePos;
    this.filePos += bytes.length;
    for (let done = 0; done < bytes.length; ) {
      try {
        done += await new Promise<number>((resolve, reject) => write(fd, bytes, done, bytes.length - done, at + done, (e, n) => (e ? reject(e) : resolve(n))));
      } catch (error) {
        throw explainWriteError(error, this.file, bytes.length - done);
      }
    }
  }

  private closeFile(): void {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    closeSync(fd);
  }
}
