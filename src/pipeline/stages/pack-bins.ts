/**
 * Bin files: a range of the packed stream as records (stream position, count, ids) in any order, written and read
 * sequentially. pack-stream.ts scatters into them when a stream outgrows its gather buffer, and a distributed merge
 * (merge-steps.ts) scatters each partition's tokens into one bin per pack job. Native byte order: a bin is read back
 * on the kind of machine that wrote it (the merge's steps check the plan, which records the byte order).
 */
import { closeSync, openSync, readSync, write } from "node:fs";
import { explainWriteError } from "../../util/atomic.ts";
import { RuntimeFailure } from "../../util/errors.ts";

export const HEADER_WORDS = 3; // position (low, high 32 bits), count
const READ_BLOCK_WORDS = 1 << 21; // 8 MiB reads

/**
 * Takes one record. A promise returned means "wait before the next record" (a bin writer whose spare buffer is still
 * being written); `ids` must stay unchanged until it resolves.
 */
export type Visit = (position: number, ids: Uint32Array) => void | Promise<void>;
/** Something that yields the stream's records, each once: the chunk files, or bin files. */
export type RecordSource = (visit: Visit) => Promise<void>;

/** The records of several sources, one source after another. */
export function concatSources(sources: RecordSource[]): RecordSource {
  return async (visit) => {
    for (const s of sources) await s(visit);
  };
}

/**
 * Routes every record of `source` (all within [edges[0], edges[last])) to the bin file of the range it falls in:
 * bin b takes [edges[b], edges[b + 1]), and a record crossing an edge is cut there. `writeBufferBytes` is shared
 * between the bins. Throws, with every file closed, on a record outside the edges or a failed write.
 */
export async function scatterToBins(source: RecordSource, edges: number[], files: string[], writeBufferBytes: number): Promise<void> {
  const count = files.length;
  if (edges.length !== count + 1) throw new RuntimeFailure(`pack: ${count} bins need ${count + 1} edges, not ${edges.length}`);
  const lo = edges[0]!;
  const hi = edges[count]!;
  const binOf = (position: number) => {
    let a = 0;
    let b = count - 1;
    while (a < b) {
      const mid = (a + b + 1) >>> 1;
      if (edges[mid]! <= position) a = mid;
      else b = mid - 1;
    }
    return a;
  };
  const writers: BinWriter[] = [];
  try {
    // Each bin has two buffers of half its share: one fills while the other is written (the write runs on libuv's
    // threads, so the disk works while this thread reads and routes the next records).
    for (const f of files) writers.push(new BinWriter(f, Math.max(32 << 10, Math.floor(writeBufferBytes / count / 2))));
    // Routes a record's tokens from `from` on to their bins. It stays synchronous unless a bin writer must wait
    // for its spare buffer; then it returns a promise that carries on from there.
    const route = (position: number, ids: Uint32Array, from: number): Promise<void> | undefined => {
      for (let at = from; at < ids.length; ) {
        const b = binOf(position + at);
        const take = Math.min(ids.length - at, edges[b + 1]! - (position + at));
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
}

/** A bin file's records, read front to back a block at a time; a record cut by a block's end is visited in parts. */
export function binSource(file: string): RecordSource {
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
