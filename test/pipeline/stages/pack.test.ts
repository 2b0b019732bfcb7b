/** pack: the interleaved document stream cut into fixed-length sequences and shards, with a document index per shard. */
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { pack } from "../../../src/pipeline/stages/pack.ts";
import { writePlanNames } from "../../../src/pipeline/mixture/plan-tables.ts";
import type { StreamOptions } from "../../../src/pipeline/stages/pack-stream.ts";
import type { TokenStore } from "../../../src/pipeline/stages/tokenize.ts";
import { docIndexName, shardName } from "../../../src/shards/layout.ts";
import { readNpyInfo, readSequences } from "../../../src/shards/npy.ts";
import { BuildDb, sqlString } from "../../../src/util/duckdb.ts";
import { sha256File } from "../../../src/util/hash.ts";
import { chunkStore } from "../../helpers/token-chunks.ts";

// Three documents (token ids without EOS), by ord: two from source a, one from source b.
const BODIES = [[1, 2, 3], [10, 11, 12], [20, 21, 22, 23]];
const EOS = 99;
const BOS = 98;
// Where each came from: source, file, row, hash.
const PROVENANCE = [[0, 0, 5, "h0"], [0, 1, 0, "h1"], [1, 0, 7, "h2"]] as const;
// Stream order: a's doc 0, b's doc 2, a's doc 1.
const STREAM = [0, 2, 1];

/** The plan's `layout` table (plan-tables.ts) for STREAM, each document with `specials` added; returns the stream's length. */
async function layOut(db: BuildDb, specials: number): Promise<number> {
  let start = 0;
  const rows = STREAM.map((ord) => {
    const [source, file, row, hash] = PROVENANCE[ord]!;
    const length = BODIES[ord]!.length + specials;
    const values = `(${start}::BIGINT, ${length}, ${source}, 0, ${ord}::BIGINT, ${file}, ${row}::BIGINT, '${hash}')`;
    start += length;
    return values;
  });
  await db.run(
    `CREATE OR REPLACE TABLE layout AS SELECT * FROM (VALUES ${rows.join(", ")}) t(start, length, source_idx, pass, read_pos, file_idx, row_idx, doc_hash)`,
  );
  await writePlanNames(db, [{ name: "a", files: ["a0.jsonl", "a1.jsonl"] }, { name: "b", files: ["b.parquet"] }]);
  return start;
}

describe("pack", () => {
  let dir: string;
  let db: BuildDb;
  let store: TokenStore;
  let stream: StreamOptions;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "chuxin-pack-"));
    db = await BuildDb.open(":memory:");
    store = chunkStore(dir, "bodies", BODIES.map((b) => Uint32Array.from(b)));
    stream = { workDir: join(dir, "bins"), bufferTokens: 1 << 16, fanout: 256, writeBufferBytes: 1 << 20 };
  });
  after(async () => {
    db.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("cuts 13 stream tokens into 3 sequences of 4 over 2 shards, continues a document across sequences and shards, and counts the dropped tail", async () => {
    const out = join(dir, "eos");
    await mkdir(out);
    const r = await pack(db, 2, await layOut(db, 1), store, { outDir: out, sequenceLength: 4, maxShardBytes: 128 + 4 * 4 * 2, eosId: EOS, bosId: undefined, stream }, () => {});
    assert.equal(r.totalSequences, 3);
    assert.equal(r.totalTokens, 12);
    assert.equal(r.tailTokensDropped, 1);
    assert.deepEqual(r.perSource, [
      { tokensWritten: 7, documentsWritten: 2, tailTokensDropped: 1 },
      { tokensWritten: 5, documentsWritten: 1, tailTokensDropped: 0 },
    ]);
    assert.deepEqual(r.shards.map((s) => [s.path, s.doc_index, s.sequences]), [[shardName(0), docIndexName(0), 2], [shardName(1), docIndexName(1), 1]]);
    const seqs: number[][] = [];
    for (const s of r.shards) {
      const path = join(out, s.path);
      assert.equal(await sha256File(path), s.sha256);
      assert.equal(await sha256File(join(out, s.doc_index)), s.doc_index_sha256);
      const info = await readNpyInfo(path);
      const ids = await readSequences(path, info, 0, info.rows);
      for (let q = 0; q < info.rows; q++) seqs.push(Array.from(ids.subarray(q * 4, q * 4 + 4)));
    }
    assert.deepEqual(seqs, [[1, 2, 3, EOS], [20, 21, 22, 23], [EOS, 10, 11, 12]]);
    const index = await db.rows<Record<string, unknown>>(`SELECT * FROM read_parquet(${sqlString(join(out, docIndexName(1)))})`);
    assert.deepEqual(
      index.map((p) => [p.source, p.file, Number(p.row), p.doc_hash, p.epoch, Number(p.start), p.length, p.doc_offset, p.doc_length]),
      [["b", "b.parquet", 7, "h2", 0, 0, 1, 4, 5], ["a", "a1.jsonl", 0, "h1", 0, 1, 3, 0, 4]],
    );
    // Nothing but the shards and their indexes: no temp file left behind.
    assert.deepEqual((await readdir(out)).sort(), [docIndexName(0), docIndexName(1), shardName(0), shardName(1)].sort());
  });

  it("opens each document with BOS when the tokenizer asks for it", async () => {
    const out = join(dir, "bos");
    await mkdir(out);
    const r = await pack(db, 2, await layOut(db, 2), store, { outDir: out, sequenceLength: 8, maxShardBytes: 1 << 20, eosId: EOS, bosId: BOS, stream }, () => {});
    const info = await readNpyInfo(join(out, r.shards[0]!.path));
    assert.deepEqual(Array.from(await readSequences(join(out, r.shards[0]!.path), info, 0, 2)), [BOS, 1, 2, 3, EOS, BOS, 20, 21, 22, 23, EOS, BOS, 10, 11, 12, EOS]);
  });

  it("writes the same shards and indexes whether the stream is gathered in memory or through bin files", async () => {
    const streamTokens = await layOut(db, 1);
    const hashes = [];
    for (const [name, bufferTokens] of [["memory", 1 << 16], ["bins", 2]] as const) {
      const out = join(dir, `same-${name}`);
      await mkdir(out);
      const r = await pack(db, 2, streamTokens, store, { outDir: out, sequenceLength: 4, maxShardBytes: 128 + 4 * 4 * 2, eosId: EOS, bosId: undefined, stream: { ...stream, bufferTokens, fanout: 2 } }, () => {});
      hashes.push(r.shards.map((s) => [s.sha256, s.doc_index_sha256]));
    }
    assert.deepEqual(hashes[1], hashes[0]);
  });
});
