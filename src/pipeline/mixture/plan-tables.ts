/**
 * The mixture plan as tables in the work database, read and written a block at a time, so a build's memory does not
 * grow with its documents. They are TEMP tables (DuckDB keeps them within its memory limit and spills them to its temp
 * directory beyond it), so nothing is written to the database file before the shards' disk check; stream_order alone
 * is a table of the file, because an appender on a connection of its own fills it:
 *   plan_docs    (read_pos, source_idx, file_idx, row_idx, doc_hash, tokens) — a view the build or merge makes, in no
 *                particular order: every unique document, its place in the token chunks (TokenReader) and its ids,
 *                specials not counted
 *   picks        (source_idx, k, pass, tokens, read_pos, file_idx, row_idx, doc_hash) — each source's selected
 *                documents in its own stream order k, tokens with specials
 *   stream_order (source_idx, k, start) — where each pick starts in the interleaved stream (sample.ts interleave)
 *   layout       (start, length, source_idx, pass, read_pos, file_idx, row_idx, doc_hash) — the stream, by start
 *   picks_by_doc (read_pos, start, length) — the written part of the stream by document, for pack-stream.ts
 *   plan_names   (source_idx, file_idx, source, file) — the names a document index writes
 */
import type { BuildDb } from "../../util/duckdb.ts";
import { sqlString } from "../../util/duckdb.ts";
import { RuntimeFailure } from "../../util/errors.ts";
import type { PickRun, StreamLayout } from "../stages/pack-stream.ts";
import { interleave, type PassPlan, type SourcePlan } from "./sample.ts";

export const PLAN_DOCS = "plan_docs";

/**
 * The key one pass over a source orders its documents by: the first 64 bits of sha256(seed, source, pass, document
 * hash), NUL-separated (util/hash.ts keyedHash64Words), as a UBIGINT. Its 16 hex digits sort as the number does, but
 * as a string each row of the pass's sort carried 32 bytes more: at 4.8 M documents under a 400 MiB share that sort
 * spilled, and took 1.6 times as long.
 */
export function passKeySql(seed: number, source: string, pass: number): string {
  return `('0x' || sha256(${sqlString(String(seed))} || chr(0) || ${sqlString(source)} || chr(0) || ${sqlString(String(pass))} || chr(0) || doc_hash)[1:16])::UBIGINT`;
}

/**
 * Fills `picks`: for each source, its full passes (every eligible document, in each pass's key order, ties by file
 * and row), then the prefix of one more pass that lands closest to its target. Returns each source's documents and
 * tokens taken.
 */
export async function fillPicks(
  db: BuildDb,
  sources: { name: string; tokens: number; documents: number }[],
  passes: PassPlan[],
  seed: number,
  eligible: string,
  specials: number,
  /** documents picked so far, after each pass (the plan of a many-pass mixture takes a while) */
  onProgress: (documents: number) => void = () => {},
): Promise<{ documents: number; tokens: number }[]> {
  await db.run(`DROP TABLE IF EXISTS stream_order`);
  await db.run(`DROP TABLE IF EXISTS layout`);
  await db.run(
    `CREATE OR REPLACE TEMP TABLE picks (source_idx INTEGER, k BIGINT, pass INTEGER, tokens INTEGER, read_pos BIGINT, file_idx INTEGER, row_idx BIGINT, doc_hash VARCHAR)`,
  );
  const docsOf = (i: number, pass: number) =>
    `SELECT tokens + ${specials} AS tokens, read_pos, file_idx, row_idx, doc_hash, ${passKeySql(seed, sources[i]!.name, pass)} AS key
     FROM ${PLAN_DOCS} WHERE source_idx = ${i} AND ${eligible}`;
  const taken = [];
  let picked = 0;
  for (const [i, source] of sources.entries()) {
    const plan = passes[i]!;
    for (let pass = 0; pass < plan.fullPasses; pass++) {
      await db.run(
        `INSERT INTO picks SELECT ${i}, ${pass * source.documents} + row_number() OVER (ORDER BY key, file_idx, row_idx) - 1 AS k, ${pass}, tokens, read_pos, file_idx, row_idx, doc_hash
         FROM (${docsOf(i, pass)}) ORDER BY k`,
      );
      onProgress((picked += source.documents));
    }
    let documents = plan.fullPasses * source.documents;
    let tokens = plan.fullPasses * source.tokens;
    if (plan.partial) {
      // Take documents in key order while the target is not reached and taking one lands closer to it than not.
      const short = plan.target - tokens; // before any document of this pass
      await db.run(
        `INSERT INTO picks
         WITH o AS (
           SELECT *, row_number() OVER w - 1 AS rn, sum(tokens) OVER w - tokens AS before
           FROM (${docsOf(i, plan.fullPasses)}) WINDOW w AS (ORDER BY key, file_idx, row_idx ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
         ), stop AS (
           SELECT coalesce(min(rn), 9223372036854775807) AS stop_rn FROM o WHERE ${short} - before <= 0 OR tokens - (${short} - before) > ${short} - before
         )
         SELECT ${i}, ${documents} + rn, ${plan.fullPasses}, tokens, read_pos, file_idx, row_idx, doc_hash FROM o WHERE rn < (SELECT stop_rn FROM stop) ORDER BY rn`,
      );
      const part = await db.one<{ n: bigint; t: bigint | null }>(`SELECT count(*) AS n, sum(tokens) AS t FROM picks WHERE source_idx = ${i} AND pass = ${plan.fullPasses}`);
      documents += Number(part.n);
      tokens += Number(part.t ?? 0n);
      onProgress((picked += Number(part.n)));
    }
    taken.push({ documents, tokens });
  }
  return taken;
}

/**
 * Interleaves the picks into the stream (sample.ts), then lays it out: `layout`, each pick with its start and where
 * its document came from, in stream order. Returns the stream's length in tokens.
 */
export async function layOutStream(db: BuildDb, plans: SourcePlan[]): Promise<number> {
  // DOUBLE holds k and start exactly (below 2^53) and appends without a BigInt a row.
  const out = await db.appender("stream_order", [["source_idx", "INTEGER"], ["k", "DOUBLE"], ["start", "DOUBLE"]]);
  let total: number;
  try {
    total = await interleave(
      plans,
      async (source, first, count) => {
        const r = await db.conn.runAndReadAll(`SELECT tokens FROM picks WHERE source_idx = ${source} AND k >= ${first} AND k < ${first + count} ORDER BY k`);
        return Uint32Array.from(r.getColumnsJS()[0] as number[]);
      },
      (source, k, start) => out.append([source, k, start]),
    );
    out.close();
  } finally {
    out.abandon();
  }
  await db.run(
    `CREATE OR REPLACE TEMP TABLE layout AS
     SELECT o.start::BIGINT AS start, p.tokens AS length, o.source_idx, p.pass, p.read_pos, p.file_idx, p.row_idx, p.doc_hash
     FROM (SELECT source_idx, k::BIGINT AS k, start FROM stream_order) o JOIN picks p USING (source_idx, k) ORDER BY o.start`,
  );
  const { n } = await db.one<{ n: bigint }>(`SELECT count(*) AS n FROM layout`);
  const picks = plans.reduce((a, p) => a + p.documentsSelected, 0);
  if (Number(n) !== picks) throw new RuntimeFailure(`the stream lays out ${n} of the plan's ${picks} picks; rerun the build`);
  await db.run(`DROP TABLE stream_order`);
  await db.run(`DROP TABLE picks`);
  return total;
}

/** The names a document index writes: each source's, and each of its files' paths. */
export async function writePlanNames(db: BuildDb, sources: { name: string; files: string[] }[]): Promise<void> {
  await db.run(`CREATE OR REPLACE TEMP TABLE plan_names (source_idx INTEGER, file_idx INTEGER, source VARCHAR, file VARCHAR)`);
  const rows = sources.flatMap((s, i) => s.files.map((f, j) => `(${i}, ${j}, ${sqlString(s.name)}, ${sqlString(f)})`));
  for (let at = 0; at < rows.length; at += 1000) await db.run(`INSERT INTO plan_names VALUES ${rows.slice(at, at + 1000).join(", ")}`);
}

/**
 * The document index of the stream range [lo, hi): every pick overlapping it, in stream order (a parquet query).
 * `longest` is the longest pick: bounding `start` on both sides lets DuckDB skip every row group outside the range.
 */
export function docIndexQuery(lo: number, hi: number, longest: number): string {
  return `SELECT n.source, n.file, l.row_idx::BIGINT AS "row", l.doc_hash, l.pass::INTEGER AS epoch,
       (greatest(l.start, ${lo}) - ${lo})::BIGINT AS start,
       (least(${hi}, l.start + l.length) - greatest(${lo}, l.start))::INTEGER AS length,
       (greatest(${lo}, l.start) - l.start)::INTEGER AS doc_offset, l.length::INTEGER AS doc_length
     FROM layout l JOIN plan_names n USING (source_idx, file_idx)
     WHERE l.start < ${hi} AND l.start > ${lo - longest} AND l.start + l.length > ${lo} ORDER BY l.start`;
}

/** Per source: the documents that start in the written stream, their tokens written, and those in the dropped tail. */
export async function writtenBySource(db: BuildDb, sources: number, written: number) {
  const rows = await db.rows<{ s: number; docs: bigint; kept: bigint | null; all: bigint | null }>(
    `SELECT source_idx AS s, count(*) FILTER (WHERE start < ${written}) AS docs,
       sum(least(length, greatest(0, ${written} - start))) AS kept, sum(length) AS all
     FROM layout GROUP BY source_idx`,
  );
  const out = Array.from({ length: sources }, () => ({ tokensWritten: 0, documentsWritten: 0, tailTokensDropped: 0 }));
  for (const r of rows) {
    const kept = Number(r.kept ?? 0n);
    out[r.s] = { tokensWritten: kept, documentsWritten: Number(r.docs), tailTokensDropped: Number(r.all ?? 0n) - kept };
  }
  return out;
}

const PREFETCH_DOCS = 65536;

/** The stream's written picks by document, for pack-stream.ts, read from `picks_by_doc` a block of documents at a time. */
export async function streamLayout(db: BuildDb, total: number, bosId: number | undefined, eosId: number): Promise<StreamLayout> {
  await db.run(`CREATE OR REPLACE TEMP TABLE picks_by_doc AS ${picksByDocQuery(total)}`);
  return picksByDoc(db, total, bosId, eosId);
}

/** The written picks by document (read position, then start): `picks_by_doc`'s rows. */
export function picksByDocQuery(total: number): string {
  return `SELECT read_pos, start, length FROM layout WHERE start < ${total} ORDER BY read_pos, start`;
}

/** A stream layout over a `picks_by_doc` table that already exists (streamLayout makes it; a merge's scatter loads its part). */
export function picksByDoc(db: BuildDb, total: number, bosId: number | undefined, eosId: number): StreamLayout {
  let block = { from: 0, to: 0, run: emptyRun() };
  return {
    total,
    bosId,
    eosId,
    async picksAt(from, to) {
      if (from < block.from || to > block.to) {
        const upTo = Math.max(to, from + PREFETCH_DOCS);
        const r = await db.conn.runAndReadAll(`SELECT read_pos::DOUBLE, start::DOUBLE, length FROM picks_by_doc WHERE read_pos >= ${from} AND read_pos < ${upTo} ORDER BY read_pos, start`);
        const [readPos, start, length] = r.getColumnsJS() as number[][];
        block = { from, to: upTo, run: { readPos: Float64Array.from(readPos!), start: Float64Array.from(start!), length: Uint32Array.from(length!) } };
      }
      return sliceRun(block.run, from, to);
    },
  };
}

function emptyRun(): PickRun {
  return { readPos: new Float64Array(0), start: new Float64Array(0), length: new Uint32Array(0) };
}

/** The rows of a run (sorted by read position) whose read position is in [from, to). */
export function sliceRun(run: PickRun, from: number, to: number): PickRun {
  const lower = (x: number) => {
    let lo = 0;
    let hi = run.readPos.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (run.readPos[mid]! < x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  const a = lower(from);
  const b = lower(to);
  return { readPos: run.readPos.subarray(a, b), start: run.start.subarray(a, b), length: run.length.subarray(a, b) };
}
