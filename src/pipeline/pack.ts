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

  async write(bytes: Buffer): Promise<void> {
    this.hash.update(bytes);
    this.pending.push(bytes);
    this.pendingBytes += bytes.length;
    if (this.pendingBytes >= 8 << 20) await this.flush();
  }

  private async flush(): Promise<void> {
    if (this.pendingBytes === 0) return;
    try {
      await this.handle.write(Buffer.concat(this.pending, this.pendingBytes));
    } catch (error) {
      throw explainWriteError(error, this.path, this.bytes);
    }
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
 * The tail that does not fill a last sequence is dropped and counted.
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
  const specials = 1 + (options.bosId !== undefined ? 1 : 0);
  const picks = stream.length / 2;
  const tokensAt = (k: number) => plans[stream[2 * k]!]!.picks.tokens[stream[2 * k + 1]!]!;
  const ordAt = (k: number) => plans[stream[2 * k]!]!.picks.ord[stream[2 * k + 1]!]!;
  const passAt = (k: number) => plans[stream[2 * k]!]!.picks.pass[stream[2 * k + 1]!]!;
  let totalStreamTokens = 0;
  for (let k = 0; k < picks; k++) totalStreamTokens += tokensAt(k);
  const totalSequences = Math.floor(totalStreamTokens / L);
  const totalTokens = totalSequences * L;
  const perShard = Math.max(1, Math.floor((options.maxShardBytes - 128) / (4 * L)));
  const shardCount = Math.ceil(totalSequences / perShard);
  const perSource = plans.map(() => ({ tokensWritten: 0, documentsWritten: 0, tailTokensDropped: 0 }));
  const sourceNames = plans.map((p) => p.name);
  const shards: ShardRecord[] = [];

  let shardIdx = -1;
  let writer: ShardWriter | undefined;
  let shardSeqs = 0;
  let shardStartToken = 0; // global token offset of the current shard
  let pieces: DocPiece[] = [];
  let written = 0; // tokens written so far (global)
  const block = Buffer.alloc(4 * Math.min(L * perShard, 1 << 20));
  let blockUsed = 0;
  const writeId = (id: number) => {
    block.writeUInt32LE(id, blockUsed);
    blockUsed += 4;
  };

  const openShard = async () => {
    shardIdx++;
    shardSeqs = Math.min(perShard, totalSequences - shardIdx * perShard);
    shardStartToken = written;
    writer = await ShardWriter.create(join(options.outDir, shardName(shardIdx)), shardSeqs, L);
    pieces = [];
  };
  const closeShard = async () => {
    if (blockUsed > 0) await writer!.write(Buffer.from(block.subarray(0, blockUsed)));
    blockUsed = 0;
    const sha256 = await writer!.finish();
    writer = undefined;
    const indexSha = await writeDocIndex(db, join(options.outDir, docIndexName(shardIdx)), pieces, prov, sourceNames);
    shards.push({ path: shardName(shardIdx), doc_index: docIndexName(shardIdx), sha256, doc_index_sha256: indexSha, sequences: shardSeqs });
    sink({ type: "stage_progress", stage: "pack", done: shardIdx + 1, total: shardCount, unit: "shards" });
  };

  try {
    // The stream is read a window of picks at a time (at most 16,384 documents or 8 M tokens: memory stays bounded
    // whatever the document lengths), each window's documents in file order (tokensOfMany).
    const WINDOW_DOCS = 16384;
    const WINDOW_TOKENS = 8 << 20;
    let window: Uint32Array[] = [];
    let windowStart = 0;
    for (let k = 0; k < picks && written < totalTokens; k++) {
      const source = stream[2 * k]!;
      if (k === windowStart + window.length) {
        windowStart = k;
        let end = k;
        for (let t = 0; end < picks && end - k < WINDOW_DOCS && (end === k || t + tokensAt(end) <= WINDOW_TOKENS); end++) t += tokensAt(end);
        window = store.tokensOfMany(Array.from({ length: end - k }, (_, j) => ordAt(k + j)));
      }
      const body = window[k - windowStart]!;
      const docLength = body.length + specials;
      let docOffset = 0;
      perSource[source]!.documentsWritten++;
      while (docOffset < docLength && written < totalTokens) {
        if (!writer) await openShard();
        const shardEnd = shardStartToken + shardSeqs * L;
        const take = Math.min(docLength - docOffset, shardEnd - written);
        // Document positions [docOffset, docOffset + take): BOS, the body's ids, EOS. Runs of body ids are copied
        // whole into the block (little-endian words), the specials one by one.
        const lead = options.bosId !== undefined ? 1 : 0;
        for (let pos = docOffset; pos < docOffset + take; ) {
          let run = 1;
          if (lead === 1 && pos === 0) writeId(options.bosId!);
          else if (pos === docLength - 1) writeId(options.eosId);
          else {
            run = Math.min(docOffset + take, docLength - 1, pos + (block.length - blockUsed) / 4) - pos;
            const ids = body.subarray(pos - lead, pos - lead + run);
            if (LITTLE_ENDIAN) new Uint32Array(block.buffer, block.byteOffset + blockUsed, run).set(ids);
            else for (let i = 0; i < run; i++) block.writeUInt32LE(ids[i]!, blockUsed + 4 * i);
            blockUsed += 4 * run;
          }
          pos += run;
          if (blockUsed === block.length) {
            await writer!.write(Buffer.from(block));
            blockUsed = 0;
          }
        }
        pieces.push({ start: written - shardStartToken, length: take, docOffset, docLength, source, ord: ordAt(k), pass: passAt(k) });
        perSource[source]!.tokensWritten += take;
        written += take;
        docOffset += take;
        if (written === shardEnd) await closeShard();
      }
      if (docOffset < docLength) perSource[source]!.tailTokensDropped += docLength - docOffset;
    }
  } catch (error) {
    await writer?.abort();
    throw error;
  }
  // Whole documents after the cut belong to the dropped tail too.
  let seen = 0;
  for (let k = 0; k < picks; k++) {
    const t = tokensAt(k);
    if (seen >= totalTokens) perSource[stream[2 * k]!]!.tailTokensDropped += t;
    seen += t;
  }
  return { shards, totalSequences, totalTokens, tailTokensDropped: totalStreamTokens - totalTokens, perSource };
}
