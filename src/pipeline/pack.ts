import { createHash } from "node:crypto";
import { open, rename, rm } from "node:fs/promises";
import { endianness } from "node:os";
import { join } from "node:path";
import { explainWriteError, tempPathFor } from "../util/atomic.ts";
import { sha256File } from "../util/hash.ts";
import type { ShardRecord } from "../shards/manifest.ts";
import { npyHeader } from "../shards/npy.ts";
import { docIndexName, shardName } from "../shards/layout.ts";
import { type BuildDb, sqlString } from "../util/duckdb.ts";
import type { ProgressSink } from "./progress.ts";
import type { SourcePlan } from "./sample.ts";
import { assembleStream, type StreamLayout, type StreamOptions } from "./pack-stream.ts";
import type { TokenReader } from "./tokenize.ts";

/** Where each unique document came from, by ord (provenance.ts reads it from the build's tables). */
export interface Provenance {
  sourceIdx: Int32Array;
  fileIdx: Int32Array;
  rowIdx: Float64Array;
  /** the document's content hash (hex) */
  hashAt(ord: number): string;
  /** file paths by source, then file index */
  files: string[][];
}


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
    const w = new ShardWriter(path, tmp, await open(tmp, "w"), 128 + 4 * rows * cols);
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

  async finish(): Promise<string> {
    await this.flush();
    await this.handle.sync().catch((error) => {
      throw explainWriteError(error, this.path, this.bytes);
    });
    await this.handle.close();
    await rename(this.tmp, this.path);
    return this.hash.digest("hex");
  }

  async abort(): Promise<void> {
    await this.handle.close().catch(() => {});
    await rm(this.tmp, { force: true });
  }
}

interface DocPiece {
  start: number;
  length: number;
  docOffset: number;
  docLength: number;
  source: number;
  ord: number;
  pass: number;
}

async function writeDocIndex(db: BuildDb, path: string, pieces: DocPiece[], prov: Provenance, sourceNames: string[]): Promise<string> {
  await db.run(`DROP TABLE IF EXISTS doc_index`);
  await db.run(
    `CREATE TEMP TABLE doc_index (piece INTEGER, source VARCHAR, file VARCHAR, "row" BIGINT, doc_hash VARCHAR, epoch INTEGER,
       start BIGINT, length INTEGER, doc_offset INTEGER, doc_length INTEGER)`,
  );
  const app = await db.conn.createAppender("doc_index");
  pieces.forEach((p, i) => {
    app.appendInteger(i);
    app.appendVarchar(sourceNames[p.source]!);
    app.appendVarchar(prov.files[p.source]![prov.fileIdx[p.ord]!]!);
    app.appendBigInt(BigInt(prov.rowIdx[p.ord]!));
    app.appendVarchar(prov.hashAt(p.ord));
    app.appendInteger(p.pass);
    app.appendBigInt(BigInt(p.start));
    app.appendInteger(p.length);
    app.appendInteger(p.docOffset);
    app.appendInteger(p.docLength);
    app.endRow();
  });
  app.closeSync();
  const tmp = tempPathFor(path);
  try {
    await db.run(
      `COPY (SELECT source, file, "row", doc_hash, epoch, start, length, doc_offset, doc_length FROM doc_index ORDER BY piece)
       TO ${sqlString(tmp)} (FORMAT parquet, COMPRESSION zstd)`,
    );
    await rename(tmp, path);
  } catch (error) {
    await rm(tmp, { force: true });
    throw error;
  }
  return sha256File(path);
}

/**
 * Packs the interleaved document stream into sequences of exactly `sequenceLength` tokens (a document
 * may continue into the next sequence), shards of at most `maxShardBytes`, and a document index per shard.
 * The tail that does not fill a last sequence is dropped and counted. The tokens come in stream order from
 * pack-stream.ts; the document index and counts come from the plan alone.
 */
export async function pack(
  db: BuildDb,
  plans: SourcePlan[],
  stream: Uint32Array,
  store: TokenReader,
  prov: Provenance,
  options: PackOptions,
  sink: ProgressSink,
): Promise<PackResult> {
  const L = options.sequenceLength;
  const picks = stream.length / 2;
  const layout: StreamLayout = { ord: new Uint32Array(picks), start: new Float64Array(picks), length: new Uint32Array(picks), total: 0, bosId: options.bosId, eosId: options.eosId };
  const pass = new Uint32Array(picks);
  let totalStreamTokens = 0;
  for (let k = 0; k < picks; k++) {
    const p = plans[stream[2 * k]!]!.picks;
    const i = stream[2 * k + 1]!;
    layout.ord[k] = p.ord[i]!;
    layout.length[k] = p.tokens[i]!;
    pass[k] = p.pass[i]!;
    layout.start[k] = totalStreamTokens;
    totalStreamTokens += p.tokens[i]!;
  }
  const totalSequences = Math.floor(totalStreamTokens / L);
  const totalTokens = totalSequences * L;
  layout.total = totalTokens;
  const perShard = Math.max(1, Math.floor((options.maxShardBytes - 128) / (4 * L)));
  const shardCount = Math.ceil(totalSequences / perShard);
  const sourceNames = plans.map((p) => p.name);
  const shards: ShardRecord[] = [];

  // The document index of shard s: the picks overlapping its range, found by a cursor that moves forward only.
  let cursor = 0;
  const piecesOf = (lo: number, hi: number): DocPiece[] => {
    const pieces: DocPiece[] = [];
    while (cursor < picks && layout.start[cursor]! + layout.length[cursor]! <= lo) cursor++;
    for (let k = cursor; k < picks && layout.start[k]! < hi; k++) {
      const from = Math.max(lo, layout.start[k]!);
      const to = Math.min(hi, layout.start[k]! + layout.length[k]!);
      pieces.push({ start: from - lo, length: to - from, docOffset: from - layout.start[k]!, docLength: layout.length[k]!, source: stream[2 * k]!, ord: layout.ord[k]!, pass: pass[k]! });
    }
    return pieces;
  };

  let shardIdx = -1;
  let writer: ShardWriter | undefined;
  let shardStart = 0;
  let shardEnd = 0;
  let written = 0;
  const openShard = async () => {
    shardIdx++;
    const sequences = Math.min(perShard, totalSequences - shardIdx * perShard);
    shardStart = written;
    shardEnd = written + sequences * L;
    writer = await ShardWriter.create(join(options.outDir, shardName(shardIdx)), sequences, L);
  };
  const closeShard = async () => {
    const sha256 = await writer!.finish();
    writer = undefined;
    const indexSha = await writeDocIndex(db, join(options.outDir, docIndexName(shardIdx)), piecesOf(shardStart, shardEnd), prov, sourceNames);
    shards.push({ path: shardName(shardIdx), doc_index: docIndexName(shardIdx), sha256, doc_index_sha256: indexSha, sequences: (shardEnd - shardStart) / L });
    sink({ type: "stage_progress", stage: "pack", done: shardIdx + 1, total: shardCount, unit: "shards" });
  };
  try {
    await assembleStream(store, layout, options.stream, async (tokens) => {
      for (let at = 0; at < tokens.length; ) {
        if (!writer) await openShard();
        const take = Math.min(tokens.length - at, shardEnd - written);
        await writer!.write(littleEndianBytes(tokens.subarray(at, at + take)));
        at += take;
        written += take;
        if (written === shardEnd) await closeShard();
      }
    });
  } catch (error) {
    await writer?.abort();
    throw error;
  }

  const perSource = plans.map(() => ({ tokensWritten: 0, documentsWritten: 0, tailTokensDropped: 0 }));
  for (let k = 0; k < picks; k++) {
    const s = perSource[stream[2 * k]!]!;
    const kept = Math.max(0, Math.min(layout.length[k]!, totalTokens - layout.start[k]!));
    if (layout.start[k]! < totalTokens) s.documentsWritten++;
    s.tokensWritten += kept;
    s.tailTokensDropped += layout.length[k]! - kept;
  }
  return { shards, totalSequences, totalTokens, tailTokensDropped: totalStreamTokens - totalTokens, perSource };
}

/** The ids as the shards store them (little-endian words); a view, not a copy, where the machine is little-endian. */
function littleEndianBytes(ids: Uint32Array): Buffer {
  if (LITTLE_ENDIAN) return Buffer.from(ids.buffer, ids.byteOffset, ids.byteLength);
  const out = Buffer.alloc(ids.byteLength);
  for (let i = 0; i < ids.length; i++) out.writeUInt32LE(ids[i]!, 4 * i);
  return out;
}
