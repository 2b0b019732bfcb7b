import { createHash } from "node:crypto";
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { mkdir, readdir, readFile, rm } from "node:fs/promises";
import { cpus, endianness } from "node:os";
import { basename, join } from "node:path";
import type { Worker } from "node:worker_threads";
import { writeFileAtomic } from "../util/atomic.ts";
import { RuntimeFailure } from "../util/errors.ts";
import { openFileBudget } from "../util/open-files.ts";
import { siblingModule, startTsWorker } from "../util/workers.ts";
import type { BuildDb } from "../util/duckdb.ts";
import type { ProgressSink } from "./progress.ts";
import { uniqueDocCount, uniqueDocTexts } from "./schema.ts";
import type { TokenizeRequest, TokenizeResult } from "./tokenize-worker.ts";
import type { BatchTokenizer } from "../tokenizer/native.ts";

/** Documents per tokenisation chunk; chunk boundaries depend only on document order, never on workers. */
export const CHUNK_DOCS = 1024;
const MAGIC = 0x4b545843; // "CXTK"
const VERSION = 2;
/** magic, version, document count, then the sha256 of everything after the header */
const HEADER = 12 + 32;
const BIG_ENDIAN = endianness() === "BE"; // chunk files are little-endian
/** A chunk's name: the sha256 of (tokenizer, texts); a crash may leave it with writeFileAtomic's temp suffix. */
const CHUNK_FILE = /^[0-9a-f]{64}\.tok(?:\.[0-9a-f]{8}\.tmp)?$/;

/** What pack reads documents' ids from: one build's TokenStore, or a merge's over several partitions' (merge.ts). */
export interface TokenReader {
  /** Ids per document (no specials), by ord. */
  readonly lengths: Uint32Array;
  tokensOfMany(ords: readonly number[]): Uint32Array[];
  close(): void;
}

/**
 * Raw token ids of every unique document (no specials), by its `ord` in unique_docs, read on demand from the
 * tokenised chunk files: memory holds each document's length and offset (8 bytes), not the corpus's tokens.
 */
export class TokenStore implements TokenReader {
  private readonly open = new Map<number, number>(); // chunk -> file descriptor, least recently used first

  /** files[c], starts[c] (each document's first id within chunk c), idCounts[c]: chunk c as tokenisation wrote it. */
  constructor(
    private readonly files: string[],
    private readonly starts: Uint32Array[],
    private readonly idCounts: number[],
    readonly lengths: Uint32Array,
    // Pack reads documents in shuffled order, so nearly every read is in another chunk: with fewer files kept open
    // than there are chunks, each read reopens one, and reading slows as the corpus grows (measured: 45 against
    // 12 us a document over 2,344 chunks with 64 open against 4,096).
    private readonly maxOpen = openFileBudget(),
  ) {}

  /**
   * A store over chunk files another run wrote (a partition's, for merge), from their headers alone: each file's
   * document count and lengths. A file that is missing, not a chunk, or of another length is an error naming it.
   */
  static openChunks(files: string[], onBad: (file: string, why: string) => Error, maxOpen = openFileBudget()): TokenStore {
    const starts: Uint32Array[] = [];
    const idCounts: number[] = [];
    const lengths: Uint32Array[] = [];
    for (const file of files) {
      let fd: number;
      try {
        fd = openSync(file, "r");
      } catch {
        throw onBad(file, "it is missing");
      }
      try {
        const head = Buffer.alloc(HEADER);
        if (readSync(fd, head, 0, HEADER, 0) !== HEADER || head.readUInt32LE(0) !== MAGIC || head.readUInt32LE(4) !== VERSION) throw onBad(file, "it is not a token chunk");
        const docs = head.readUInt32LE(8);
        // tokensOf finds a document's chunk by ord / CHUNK_DOCS: every chunk but the last is full.
        if (docs > CHUNK_DOCS || (docs < CHUNK_DOCS && starts.length < files.length - 1)) throw onBad(file, `it holds ${docs} documents, not ${CHUNK_DOCS}`);
        const raw = Buffer.alloc(4 * docs);
        if (readSync(fd, raw, 0, raw.length, HEADER) !== raw.length) throw onBad(file, "it ends inside its header");
        const lens = new Uint32Array(docs);
        const s = new Uint32Array(docs);
        let at = 0;
        for (let i = 0; i < docs; i++) {
          lens[i] = raw.readUInt32LE(4 * i);
          s[i] = at;
          at += lens[i]!;
        }
        if (fstatSync(fd).size !== HEADER + 4 * (docs + at)) throw onBad(file, "its size does not match its header");
        starts.push(s);
        idCounts.push(at);
        lengths.push(lens);
      } finally {
        closeSync(fd);
      }
    }
    const all = new Uint32Array(lengths.reduce((a, l) => a + l.length, 0));
    let at = 0;
    for (const l of lengths) {
      all.set(l, at);
      at += l.length;
    }
    return new TokenStore(files, starts, idCounts, all, maxOpen);
  }

  /** Each chunk file, with its document and id counts, in order. */
  chunks(): { file: string; documents: number; ids: number }[] {
    return this.files.map((file, c) => ({ file, documents: this.starts[c]!.length, ids: this.idCounts[c]! }));
  }

  tokensOf(ord: number): Uint32Array {
    const chunk = Math.floor(ord / CHUNK_DOCS);
    const starts = this.starts[chunk]!;
    const ids = new Uint32Array(this.lengths[ord]!);
    const bytes = Buffer.from(ids.buffer, ids.byteOffset, ids.byteLength);
    const at = HEADER + 4 * (starts.length + starts[ord % CHUNK_DOCS]!);
    for (let done = 0; done < bytes.length; ) {
      const n = readSync(this.fd(chunk), bytes, done, bytes.length - done, at + done);
      if (n === 0) throw new RuntimeFailure(`${this.files[chunk]}: ends before document ${ord}'s tokens; delete it and rebuild`);
      done += n;
    }
    if (BIG_ENDIAN) for (let i = 0; i < ids.length; i++) ids[i] = bytes.readUInt32LE(4 * i);
    return ids;
  }

  /**
   * The ids of several documents, in the order asked, read chunk by chunk in file order: a shuffled stream read one
   * document at a time would reopen a chunk file for nearly every document once the chunks outnumber the open
   * files kept, and seek back and forth within each.
   */
  tokensOfMany(ords: readonly number[]): Uint32Array[] {
    const order = ords.map((ord, i) => ({ ord, i })).sort((a, b) => a.ord - b.ord || a.i - b.i);
    const out: Uint32Array[] = new Array(ords.length);
    for (const { ord, i } of order) out[i] = this.tokensOf(ord);
    return out;
  }

  close(): void {
    for (const fd of this.open.values()) closeSync(fd);
    this.open.clear();
  }

  private fd(chunk: number): number {
    let fd = this.open.get(chunk);
    if (fd !== undefined) {
      this.open.delete(chunk); // most recently used goes last
    } else {
      fd = openSync(this.files[chunk]!, "r");
      // The file must still be the one tokenisation wrote (header, lengths, ids), not one changed since.
      const expected = HEADER + 4 * (this.starts[chunk]!.length + this.idCounts[chunk]!);
      if (fstatSync(fd).size !== expected) {
        closeSync(fd);
        throw new RuntimeFailure(`${this.files[chunk]}: changed since it was tokenised (${expected} bytes expected); delete it and rebuild`);
      }
      if (this.open.size >= this.maxOpen) {
        const [oldest, oldFd] = this.open.entries().next().value as [number, number];
        closeSync(oldFd);
        this.open.delete(oldest);
      }
    }
    this.open.set(chunk, fd);
    return fd;
  }
}

/**
 * A chunk file: "CXTK", version 2, document count, the sha256 of the rest, each document's length, then
 * every id (little-endian u32). The hash is checked whenever a rerun reuses the chunk, so a file damaged
 * on disk is tokenised again instead of ending up in the shards.
 */
export function encodeChunk(lengths: Uint32Array, ids: Uint32Array): Uint8Array {
  const out = new Uint8Array(HEADER + 4 * (lengths.length + ids.length));
  const view = new DataView(out.buffer);
  view.setUint32(0, MAGIC, true);
  view.setUint32(4, VERSION, true);
  view.setUint32(8, lengths.length, true);
  let at = HEADER;
  for (const v of lengths) view.setUint32((at += 4) - 4, v, true);
  for (const v of ids) view.setUint32((at += 4) - 4, v, true);
  out.set(createHash("sha256").update(out.subarray(HEADER)).digest(), 12);
  return out;
}

/** The chunk's lengths and ids, or undefined when it is not an intact chunk of `docs` documents. */
export function decodeChunk(bytes: Buffer, docs: number): { lengths: Uint32Array; ids: Uint32Array } | undefined {
  if (bytes.length < HEADER || (bytes.length - HEADER) % 4 !== 0) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0, true) !== MAGIC || view.getUint32(4, true) !== VERSION || view.getUint32(8, true) !== docs) return undefined;
  const digest = createHash("sha256").update(bytes.subarray(HEADER)).digest();
  if (!digest.equals(bytes.subarray(12, HEADER))) return undefined;
  const words = (bytes.length - HEADER) / 4;
  const all = new Uint32Array(words);
  for (let i = 0; i < words; i++) all[i] = view.getUint32(HEADER + 4 * i, true);
  const lengths = all.slice(0, docs);
  const ids = all.slice(docs);
  if (lengths.reduce((a, b) => a + b, 0) !== ids.length) return undefined;
  return { lengths, ids };
}

class Pool {
  private idle: Worker[] = [];
  private waiting: ((w: Worker) => void)[] = [];
  private constructor(readonly workers: Worker[]) {
    this.idle = [...workers];
  }

  static async start(count: number, tokenizerJson: string, tokenizerPath: string): Promise<Pool> {
    const workers = Array.from({ length: count }, () =>
      startTsWorker(siblingModule("tokenize-worker", import.meta.url), { tokenizerJson, tokenizerPath }),
    );
    await Promise.all(
      workers.map(
        (w) =>
          new Promise<void>((resolve, reject) => {
            w.once("message", () => resolve());
            w.once("error", reject);
          }),
      ),
    );
    return new Pool(workers);
  }

  async run(request: TokenizeRequest): Promise<TokenizeResult> {
    const worker = this.idle.pop() ?? (await new Promise<Worker>((r) => this.waiting.push(r)));
    try {
      return await new Promise<TokenizeResult>((resolve, reject) => {
        const onError = (e: Error) => reject(new RuntimeFailure(`tokenizer worker failed: ${e.message}`));
        worker.once("error", onError);
        worker.once("message", (m: TokenizeResult) => {
          worker.off("error", onError);
          resolve(m);
        });
        worker.postMessage(request);
      });
    } finally {
      const next = this.waiting.shift();
      if (next) next(worker);
      else this.idle.push(worker);
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

export interface TokenizeOptions {
  workers?: number;
  tokenizerJson: string;
  tokenizerPath: string;
  tokenizerSha256: string;
  cacheDir: string;
  /** The native tokenizer, when the tokenizer.json is one it implements; else a pool of JS workers. */
  native?: BatchTokenizer;
  impl: string;
}

/**
 * Tokenises every unique document in a pool of worker threads. Each chunk's ids land in a file named by
 * the hash of (tokenizer, texts), so a rerun after a crash reuses every finished chunk.
 */
export async function tokenizeDocuments(db: BuildDb, options: TokenizeOptions, sink: ProgressSink): Promise<{ store: TokenStore; reusedChunks: number; bytes: number; tokens: number }> {
  const docs = await uniqueDocCount(db);
  const chunkCount = Math.ceil(docs / CHUNK_DOCS);
  const lengths = new Uint32Array(docs);
  const files: string[] = new Array(chunkCount);
  const idCounts: number[] = new Array(chunkCount);
  const starts: Uint32Array[] = new Array(chunkCount);
  await mkdir(options.cacheDir, { recursive: true });
  const workerCount = Math.max(1, options.workers ?? cpus().length);
  let pool: Pool | undefined;
  let reusedChunks = 0;
  let bytes = 0;
  let tokens = 0;
  let finished = 0;
  const inFlight = new Set<Promise<void>>();
  try {
    for (let chunk = 0; chunk < chunkCount; chunk++) {
      const first = chunk * CHUNK_DOCS;
      const texts = await uniqueDocTexts(db, first, CHUNK_DOCS);
      const key = createHash("sha256").update(options.tokenizerSha256).update("\u0000" + options.impl);
      for (const t of texts) key.update("\u0000").update(t);
      const file = join(options.cacheDir, `${key.digest("hex")}.tok`);
      const chunkBytes = texts.reduce((a, t) => a + Buffer.byteLength(t), 0);
      const place = (result: { lengths: Uint32Array; ids: Uint32Array }) => {
        lengths.set(result.lengths, first);
        const s = new Uint32Array(result.lengths.length);
        let at = 0;
        result.lengths.forEach((len, i) => {
          s[i] = at;
          at += len;
        });
        files[chunk] = file; // the ids stay on disk; TokenStore reads each document's when packing
        idCounts[chunk] = result.ids.length;
        starts[chunk] = s;
        bytes += chunkBytes;
        tokens += result.ids.length;
        sink({ type: "stage_progress", stage: "tokenize", done: Math.min(docs, (++finished) * CHUNK_DOCS), total: docs, unit: "docs", bytes });
      };
      const cached = await readFile(file).then((b) => decodeChunk(b, texts.length), () => undefined);
      if (cached) {
        reusedChunks++;
        place(cached);
        continue;
      }
      if (options.native) {
        const result = await options.native.encodeBatch(texts);
        await writeFileAtomic(file, encodeChunk(result.lengths, result.ids));
        place(result);
        continue;
      }
      pool ??= await Pool.start(Math.min(workerCount, chunkCount), options.tokenizerJson, options.tokenizerPath);
      const job = pool.run({ chunk, texts }).then(async (result) => {
        await writeFileAtomic(file, encodeChunk(result.lengths, result.ids));
        place(result);
      });
      inFlight.add(job);
      job.finally(() => inFlight.delete(job)).catch(() => {});
      // Bound memory: at most two chunks per worker are read ahead.
      while (inFlight.size >= 2 * workerCount) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
  } finally {
    await pool?.stop();
  }
  // Chunks of documents this build no longer has (an earlier corpus, another tokenizer) would only grow the folder.
  // Only chunk files (and their temp files) go: a partition's tokens/ may sit in a folder the user forced a build into.
  const kept = new Set(files.map((f) => basename(f)));
  for (const name of await readdir(options.cacheDir)) {
    if (CHUNK_FILE.test(name) && !kept.has(name)) await rm(join(options.cacheDir, name), { force: true });
  }
  return { store: new TokenStore(files, starts, idCounts, lengths), reusedChunks, bytes, tokens };
}
