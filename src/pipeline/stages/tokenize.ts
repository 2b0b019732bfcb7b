import { createHash } from "node:crypto";
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { mkdir, readdir, readFile, rm } from "node:fs/promises";
import { cpus, endianness } from "node:os";
import { basename, join } from "node:path";
import type { Worker } from "node:worker_threads";
import { writeFileAtomic } from "../../util/atomic.ts";
import { RuntimeFailure } from "../../util/errors.ts";
import { siblingModule, startTsWorker } from "../../util/workers.ts";
import type { BuildDb } from "../../util/duckdb.ts";
import type { ProgressSink } from "../progress.ts";
import { DOC_TOKENS, uniqueDocCount, uniqueDocTexts } from "../schema.ts";
import type { TokenizeRequest, TokenizeResult } from "./tokenize-worker.ts";
import type { BatchTokenizer } from "../../tokenizer/native.ts";

/** Documents per tokenisation chunk; chunk boundaries depend only on document order, never on workers. */
export const CHUNK_DOCS = 1024;
const MAGIC = 0x4b545843; // "CXTK"
const VERSION = 2;
/** magic, version, document count, then the sha256 of everything after the header */
const HEADER = 12 + 32;
const BIG_ENDIAN = endianness() === "BE"; // chunk files are little-endian
/** A chunk's name: the sha256 of (tokenizer, texts); a crash may leave it with writeFileAtomic's temp suffix. */
const CHUNK_FILE = /^[0-9a-f]{64}\.tok(?:\.[0-9a-f]{8}\.tmp)?$/;

/** The sha256 of a chunk's payload (lengths and ids), as its header holds it: read without reading the chunk. */
export function chunkDigest(file: string): string {
  const fd = openSync(file, "r");
  try {
    const head = Buffer.alloc(HEADER);
    if (readSync(fd, head, 0, HEADER, 0) !== HEADER || head.readUInt32LE(0) !== MAGIC) throw new RuntimeFailure(`${file}: not a token chunk; delete it and rebuild`);
    return head.subarray(12, HEADER).toString("hex");
  } finally {
    closeSync(fd);
  }
}

/** One chunk file's documents, read whole: their lengths and ids (views of the store's buffer, valid until its next read). */
export interface ChunkRead {
  lengths: Uint32Array;
  /** every document's ids, one after another */
  ids: Uint32Array;
}

/**
 * What pack reads documents' ids from: one build's TokenStore, or a merge's over several partitions' (merge.ts). A
 * document's read position is its place in the chunks read one after another (a build's ord; in a merge, the
 * partitions' documents one after another, duplicates another partition keeps included).
 */
export interface TokenReader {
  /** documents in all chunks */
  readonly documents: number;
  readonly chunkCount: number;
  /** Chunk `c`, read whole: pack reads the chunks front to back, once (pack-stream.ts). */
  readChunk(c: number): ChunkRead;
}

/**
 * Raw token ids of every unique document (no specials), by its `ord` in unique_docs, in the tokenised chunk files:
 * memory holds two counts per chunk, not the corpus's tokens or lengths (those are in the doc_tokens table).
 */
export class TokenStore implements TokenReader {
  private bytes = new Uint8Array(0);
  readonly documents: number;

  /** files[c], docCounts[c] and idCounts[c]: chunk c as tokenisation wrote it; chunk c holds ords [c * CHUNK_DOCS, ...). */
  constructor(
    private readonly files: string[],
    private readonly docCounts: number[],
    private readonly idCounts: number[],
    /**
     * Where another run wrote the chunks (a partition's, read by a merge): each one's payload sha256 as that run
     * recorded it, checked on every read. A build's own chunks were checked as tokenisation reused them (decodeChunk).
     */
    private readonly sha256s?: string[],
    private readonly onBad: (file: string, why: string) => Error = (file, why) => new RuntimeFailure(`${file}: ${why}; delete it and rebuild`),
  ) {
    this.documents = docCounts.reduce((a, b) => a + b, 0);
  }

  /**
   * A store over chunk files another run wrote (a partition's, for merge), from their headers alone: each file's
   * document count and lengths. A file that is missing, not a chunk, or of another length is an error naming it.
   */
  static openChunks(files: string[], onBad: (file: string, why: string) => Error, sha256s?: string[]): TokenStore {
    const idCounts: number[] = [];
    const docCounts: number[] = [];
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
        // Chunk c holds ords from c * CHUNK_DOCS: every chunk but the last is full.
        if (docs > CHUNK_DOCS || (docs < CHUNK_DOCS && docCounts.length < files.length - 1)) throw onBad(file, `it holds ${docs} documents, not ${CHUNK_DOCS}`);
        const raw = Buffer.alloc(4 * docs);
        if (readSync(fd, raw, 0, raw.length, HEADER) !== raw.length) throw onBad(file, "it ends inside its header");
        let ids = 0;
        for (let i = 0; i < docs; i++) ids += raw.readUInt32LE(4 * i);
        if (fstatSync(fd).size !== HEADER + 4 * (docs + ids)) throw onBad(file, "its size does not match its header");
        idCounts.push(ids);
        docCounts.push(docs);
      } finally {
        closeSync(fd);
      }
    }
    return new TokenStore(files, docCounts, idCounts, sha256s, onBad);
  }

  get chunkCount(): number {
    return this.files.length;
  }

  /** Each chunk file, with its document and id counts, in order. */
  chunks(): { file: string; documents: number; ids: number }[] {
    return this.files.map((file, c) => ({ file, documents: this.docCounts[c]!, ids: this.idCounts[c]! }));
  }

  readChunk(c: number): ChunkRead {
    const file = this.files[c]!;
    const docs = this.docCounts[c]!;
    const size = HEADER + 4 * (docs + this.idCounts[c]!);
    // A fresh ArrayBuffer, so the ids can be viewed as words in place.
    if (this.bytes.length < size) this.bytes = new Uint8Array(Math.max(size, 2 * this.bytes.length));
    const changed = () => this.onBad(file, `its size or header changed since it was tokenised (${size} bytes expected)`);
    const fd = openSync(file, "r");
    try {
      // The file must still be the one tokenisation wrote (header, lengths, ids), not one changed since.
      if (fstatSync(fd).size !== size) throw changed();
      for (let done = 0; done < size; ) {
        const n = readSync(fd, this.bytes, done, size - done, done);
        if (n === 0) throw changed();
        done += n;
      }
    } finally {
      closeSync(fd);
    }
    const view = new DataView(this.bytes.buffer);
    if (view.getUint32(8, true) !== docs) throw changed();
    // Another run's chunk: every byte is checked before it can reach a shard, the payload against the sha256 that
    // run recorded, and the header's copy of it too.
    const want = this.sha256s?.[c];
    if (want !== undefined) {
      const payload = createHash("sha256").update(this.bytes.subarray(HEADER, size)).digest();
      if (payload.toString("hex") !== want || !payload.equals(this.bytes.subarray(12, HEADER))) throw this.onBad(file, "its bytes differ from the sha256 recorded when it was written");
    }
    let lengths = new Uint32Array(this.bytes.buffer, HEADER, docs);
    let ids = new Uint32Array(this.bytes.buffer, HEADER + 4 * docs, this.idCounts[c]!);
    if (BIG_ENDIAN) {
      lengths = Uint32Array.from({ length: docs }, (_, i) => view.getUint32(HEADER + 4 * i, true));
      ids = Uint32Array.from({ length: ids.length }, (_, i) => view.getUint32(HEADER + 4 * (docs + i), true));
    }
    let sum = 0;
    for (let i = 0; i < docs; i++) sum += lengths[i]!;
    if (sum !== ids.length) throw changed();
    return { lengths, ids };
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
  if (BIG_ENDIAN) for (let i = 0; i < words; i++) all[i] = view.getUint32(HEADER + 4 * i, true);
  else new Uint8Array(all.buffer).set(bytes.subarray(HEADER)); // a copy: the Buffer's offset need not be 4-aligned
  const lengths = all.subarray(0, docs);
  const ids = all.subarray(docs);
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
  const files: string[] = new Array(chunkCount);
  const docCounts: number[] = new Array(chunkCount);
  const idCounts: number[] = new Array(chunkCount);
  // Each document's length goes to the work database as its chunk finishes (in any order), not into an array here.
  const lengths = await db.appender(DOC_TOKENS, [["ord", "UINTEGER"], ["tokens", "UINTEGER"]]);
  await mkdir(options.cacheDir, { recursive: true });
  const workerCount = Math.max(1, options.workers ?? cpus().length);
  let pool: Pool | undefined;
  let reusedChunks = 0;
  let bytes = 0;
  let tokens = 0;
  let finished = 0;
  const inFlight = new Set<Promise<void>>();
  // The next chunk's texts are read from DuckDB while this one is hashed, read back or tokenised: one query ahead.
  const textsOf = (chunk: number) => (chunk < chunkCount ? uniqueDocTexts(db, chunk * CHUNK_DOCS, CHUNK_DOCS) : Promise.resolve([]));
  let nextTexts = textsOf(0);
  try {
    for (let chunk = 0; chunk < chunkCount; chunk++) {
      const first = chunk * CHUNK_DOCS;
      const texts = await nextTexts;
      nextTexts = textsOf(chunk + 1);
      nextTexts.catch(() => {}); // awaited at the next chunk, or settled below
      const key = createHash("sha256").update(options.tokenizerSha256).update("\u0000" + options.impl);
      for (const t of texts) key.update("\u0000").update(t);
      const file = join(options.cacheDir, `${key.digest("hex")}.tok`);
      const chunkBytes = texts.reduce((a, t) => a + Buffer.byteLength(t), 0);
      const place = (result: { lengths: Uint32Array; ids: Uint32Array }) => {
        result.lengths.forEach((n, i) => lengths.append([first + i, n]));
        files[chunk] = file; // the ids stay on disk; pack reads them chunk by chunk
        docCounts[chunk] = result.lengths.length;
        idCounts[chunk] = result.ids.length;
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
    lengths.close();
  } finally {
    await nextTexts.catch(() => {}); // no query may still run on the database when the caller closes it
    lengths.abandon();
    await pool?.stop();
  }
  // Chunks of documents this build no longer has (an earlier corpus, another tokenizer) would only grow the folder.
  // Only chunk files (and their temp files) go: a partition's tokens/ may sit in a folder the user forced a build into.
  const kept = new Set(files.map((f) => basename(f)));
  for (const name of await readdir(options.cacheDir)) {
    if (CHUNK_FILE.test(name) && !kept.has(name)) await rm(join(options.cacheDir, name), { force: true });
  }
  return { store: new TokenStore(files, docCounts, idCounts), reusedChunks, bytes, tokens };
}
