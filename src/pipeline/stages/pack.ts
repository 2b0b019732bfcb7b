import { createHash } from "node:crypto";
import { open, rename, rm } from "node:fs/promises";
import { endianness } from "node:os";
import { join } from "node:path";
import { explainWriteError, tempPathFor } from "../../util/atomic.ts";
import { sha256File } from "../../util/hash.ts";
import type { ShardRecord } from "../../shards/manifest.ts";
import { npyHeader } from "../../shards/npy.ts";
import { docIndexName, shardName } from "../../shards/layout.ts";
import { type BuildDb, sqlString } from "../../util/duckdb.ts";
import { RuntimeFailure } from "../../util/errors.ts";
import type { ProgressSink } from "../progress.ts";
import { assembleStream, type StreamOptions } from "./pack-stream.ts";
import { docIndexQuery, streamLayout, writtenBySource } from "../mixture/plan-tables.ts";
import type { TokenReader } from "./tokenize.ts";

const LITTLE_ENDIAN = endianness() === "LE";

export interface PackResult {
  shards: ShardRecord[];
  totalSequences: number;
  totalTokens: number;
  tailTokensDropped: number;
  perSource: { tokensWritten: number; documentsWritten: number; tailTokensDropped: number }[];
}

export interface PackOptions {
  outDir: string;
  sequenceLength: number;
  maxShardBytes: number;
  eosId: number;
  bosId: number | undefined;
  /** where the stream's bins go and how much memory assembling it takes (pack-stream.ts) */
  stream: StreamOptions;
}

/** Streams one shard to a temp file, hashing as it goes; it becomes visible only when complete. */
class ShardWriter {
  private readonly hash = createHash("sha256");
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private constructor(
    readonly path: string,
    readonly tmp: string,
    private readonly handle: Awaited<ReturnType<typeof open>>,
    private readonly bytes: number,
  ) {}

  static async create(path: string, rows: number, cols: number): Promise<ShardWriter> {
    const tmp = tempPathFor(path);
    const w = new ShardWriter(path, tmp, await open(tmp, "w"), shardFileBytes(rows, cols));
    await w.write(npyHeader(rows, cols));
    return w;
  }

  /** The bytes are copied or written before this returns, so the caller may reuse them. */
  async write(bytes: Buffer): Promise<void> {
    this.hash.update(bytes);
    if (this.pendingBytes + bytes.length < 8 << 20) {
      this.pending.push(Buffer.from(bytes));
      this.pendingBytes += bytes.length;
      return;
    }
    await this.flush();
    await this.writeNow(bytes);
  }

  private async writeNow(bytes: Buffer): Promise<void> {
    try {
      for (let done = 0; done < bytes.length; ) done += (await this.handle.write(bytes, done, bytes.length - done)).bytesWritten;
    } catch (error) {
      throw explainWriteError(error, this.path, this.bytes);
    }
  }

  private async flush(): Promise<void> {
    if (this.pendingBytes === 0) return;
    await this.writeNow(Buffer.concat(this.pending, this.pendingBytes));
    this.pending = [];
    this.pendingBytes = 0;
  }

  /** Writes what is buffered and returns the shard's sha256; `commit` then makes the file durable and visible. */
  async finishWrites(): Promise<string> {
    await this.flush();
    return this.hash.digest("hex");
  }

  async commit(): Promise<void> {
    await this.handle.sync().catch((error) => {
      throw explainWriteError(error, this.path, this.bytes);
    });
    await this.handle.close();
    await rename(this.tmp, this.path);
  }

  async abort(): Promise<void> {
    await this.handle.close().catch(() => {});
    await rm(this.tmp, { force: true });
  }
}

/** The document index of the stream range [lo, hi), from the plan's tables, to `path` through a temp file. */
async function writeDocIndex(db: BuildDb, path: string, lo: number, hi: number, longest: number): Promise<string> {
  const tmp = tempPathFor(path);
  try {
    await db.run(`COPY (${docIndexQuery(lo, hi, longest)}) TO ${sqlString(tmp)} (FORMAT parquet, COMPRESSION zstd)`);
    await rename(tmp, path);
  } catch (error) {
    await rm(tmp, { force: true });
    throw error;
  }
  return sha256File(path);
}

/** How a stream of `streamTokens` packs: whole sequences of `sequenceLength`, `perShard` to a shard, the tail dropped. */
export interface ShardGeometry {
  sequenceLength: number;
  perShard: number;
  totalSequences: number;
  shardCount: number;
}

export function shardGeometry(streamTokens: number, sequenceLength: number, maxShardBytes: number): ShardGeometry {
  const totalSequences = Math.floor(streamTokens / sequenceLength);
  const perShard = Math.max(1, Math.floor((maxShardBytes - 128) / (4 * sequenceLength)));
  return { sequenceLength, perShard, totalSequences, shardCount: Math.ceil(totalSequences / perShard) };
}

/** Bytes of a shard file of `sequences` rows: its .npy header and the ids. */
export function shardFileBytes(sequences: number, sequenceLength: number): number {
  return npyHeader(sequences, sequenceLength).length + 4 * sequences * sequenceLength;
}

/** The stream range shards [first, end) hold. */
export function shardSpan(g: ShardGeometry, first: number, end: number): { lo: number; hi: number } {
  const L = g.sequenceLength;
  return { lo: first * g.perShard * L, hi: Math.min(g.totalSequences, end * g.perShard) * L };
}

/**
 * Packs the laid-out document stream (plan-tables.ts `layout`, `streamTokens` long) into sequences of exactly
 * `sequenceLength` tokens (a document may continue into the next sequence), shards of at most `maxShardBytes`, and a
 * document index per shard. The tail that does not fill a last sequence is dropped and counted. The tokens come in
 * stream order from pack-stream.ts; the document index and counts come from the plan's tables alone.
 */
export async function pack(
  db: BuildDb,
  sourceCount: number,
  streamTokens: number,
  store: TokenReader,
  options: PackOptions,
  sink: ProgressSink,
): Promise<PackResult> {
  const g = shardGeometry(streamTokens, options.sequenceLength, options.maxShardBytes);
  const totalTokens = g.totalSequences * g.sequenceLength;
  const layout = await streamLayout(db, totalTokens, options.bosId, options.eosId);
  const longest = await longestPick(db);
  const shards = await writeShards(db, g, { first: 0, end: g.shardCount }, longest, options.outDir, (emit) => assembleStream(store, layout, options.stream, emit), sink);
  const perSource = await writtenBySource(db, sourceCount, totalTokens);
  return { shards, totalSequences: g.totalSequences, totalTokens, tailTokensDropped: streamTokens - totalTokens, perSource };
}

/** The longest pick of the plan's `layout` (a document index's query bounds its scan with it). */
export async function longestPick(db: BuildDb): Promise<number> {
  return Number((await db.one<{ n: number | null }>(`SELECT max(length) AS n FROM layout`)).n ?? 0);
}

/**
 * Writes shards [range.first, range.end) and their document indexes (from `layout` and `plan_names`) into `outDir`,
 * each through a temp file. `feed` calls its `emit` with the tokens of exactly those shards' stream range, in order.
 */
export async function writeShards(
  db: BuildDb,
  g: ShardGeometry,
  range: { first: number; end: number },
  longest: number,
  outDir: string,
  feed: (emit: (tokens: Uint32Array) => Promise<void>) => Promise<void>,
  sink: ProgressSink,
): Promise<ShardRecord[]> {
  const L = g.sequenceLength;
  const shards: ShardRecord[] = [];
  let shardIdx = range.first - 1;
  let writer: ShardWriter | undefined;
  let shardStart = 0;
  let shardEnd = 0;
  let written = shardSpan(g, range.first, range.end).lo;
  // A shard's fsync (a gigabyte going to disk) runs while the next shard is gathered; one at a time. So does its
  // document index (DuckDB's COPY runs on its own threads), one at a time too.
  let committing: Promise<void> = Promise.resolve();
  let indexing: Promise<void> = Promise.resolve();
  const openShard = async () => {
    shardIdx++;
    if (shardIdx >= range.end) throw new RuntimeFailure(`pack: more tokens than shards ${range.first}..${range.end - 1} hold; rerun the build`);
    const sequences = Math.min(g.perShard, g.totalSequences - shardIdx * g.perShard);
    shardStart = written;
    shardEnd = written + sequences * L;
    writer = await ShardWriter.create(join(outDir, shardName(shardIdx)), sequences, L);
  };
  const closeShard = async () => {
    const done = writer!;
    writer = undefined;
    let sha256: string;
    try {
      sha256 = await done.finishWrites();
      await committing;
    } catch (error) {
      await done.abort();
      throw error;
    }
    committing = done.commit().catch(async (error) => {
      await done.abort();
      throw error;
    });
    committing.catch(() => {}); // awaited below or at the next shard
    const record: ShardRecord = { path: shardName(shardIdx), doc_index: docIndexName(shardIdx), sha256, doc_index_sha256: "", sequences: (shardEnd - shardStart) / L };
    shards.push(record);
    const [lo, hi, finished] = [shardStart, shardEnd, shardIdx + 1 - range.first];
    await indexing;
    indexing = writeDocIndex(db, join(outDir, record.doc_index), lo, hi, longest).then((indexSha) => {
      record.doc_index_sha256 = indexSha;
      sink({ type: "stage_progress", stage: "pack", done: finished, total: range.end - range.first, unit: "shards" });
    });
    indexing.catch(() => {}); // awaited below or at the next shard
  };
  try {
    await feed(async (tokens) => {
      for (let at = 0; at < tokens.length; ) {
        if (!writer) await openShard();
        const take = Math.min(tokens.length - at, shardEnd - written);
        await writer!.write(littleEndianBytes(tokens.subarray(at, at + take)));
        at += take;
        written += take;
        if (written === shardEnd) await closeShard();
      }
    });
    await committing;
    await indexing;
  } catch (error) {
    await writer?.abort();
    await committing.catch(() => {});
    await indexing.catch(() => {});
    throw error;
  }
  if (shards.length !== range.end - range.first) throw new RuntimeFailure(`pack: wrote ${shards.length} of shards ${range.first}..${range.end - 1}; rerun the build`);
  return shards;
}

/** The ids as the shards store them (little-endian words); a view, not a copy, where the machine is little-endian. */
function littleEndianBytes(ids: Uint32Array): Buffer {
  if (LITTLE_ENDIAN) return Buffer.from(ids.buffer, ids.byteOffset, ids.byteLength);
  const out = Buffer.alloc(ids.byteLength);
  for (let i = 0; i < ids.length; i++) out.writeUInt32LE(ids[i]!, 4 * i);
  return out;
}
