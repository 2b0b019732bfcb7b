/**
 * A merge's global dedup over the partitions' keys (docs.parquet, duplicates.parquet), by ranges of the document hash.
 * Every copy of a text hashes alike, so each range dedups on its own: one job may run the whole range (the one-job
 * merge, or a plan with no dedup steps), or N jobs a range each (`--merge-step dedup --index h`), so that each
 * partition's job owns 1/N of the hashes. The partitions write their keys sorted by hash, so a range job reads only
 * the parquet row groups its range touches. Either way the first occurrence in (source, file, row) order wins, as on
 * one machine.
 */
import { join } from "node:path";
import { type BuildDb, sqlString } from "../../util/duckdb.ts";
import { RuntimeFailure } from "../../util/errors.ts";
import { sha256File } from "../../util/hash.ts";
import type { Partition } from "./partitions.ts";
import { PARTITION_DOCS, PARTITION_DUPLICATES } from "./partition-format.ts";
import { PLAN_DOCS } from "../mixture/plan-tables.ts";

/** The documents whose hash's first 32 bits lie in [lo, hi), as 8 lowercase hex digits; hi null: up to the end. */
export interface HashRange {
  index: number;
  count: number;
  lo: string;
  hi: string | null;
}

/** Range `index` of `count` equal ranges of the hash's first 32 bits. */
export function hashRange(index: number, count: number): HashRange {
  const edge = (k: number) => Math.floor((k * 2 ** 32) / count).toString(16).padStart(8, "0");
  return { index, count, lo: edge(index), hi: index + 1 < count ? edge(index + 1) : null };
}

// doc_hash is 32 lowercase hex digits (DuckDB's md5), so comparing its text with an 8-digit edge compares the number.
const inRange = (r: HashRange) => `doc_hash >= '${r.lo}'${r.hi === null ? "" : ` AND doc_hash < '${r.hi}'`}`;

/** What a range's dedup removed. */
export interface RangeCounts {
  /** per source: its documents removed as copies of a document the same source kept, and of one another source kept */
  perSource: { within: number; across: number }[];
  /** the partitions' own duplicates in the range (each partition removed them before the merge) */
  local: number;
  /** documents in the range that a partition kept and a copy in another partition beats */
  cross: number;
}

/** The dedup steps' results a merge plan reads instead of running the dedup itself (merge-dedup-step.ts). */
export interface DedupDone {
  counts: RangeCounts[];
  /** each range's kept documents (dedupRange's `kept`), as parquet */
  keptFiles: string[];
}

/** Checks partitions' key files against the sha256 their partition recorded. */
export async function checkPartitionKeys(parts: Partition[]): Promise<void> {
  for (const p of parts) {
    for (const [file, want] of [[PARTITION_DOCS, p.record.docs_sha256], [PARTITION_DUPLICATES, p.record.duplicates_sha256]] as const) {
      const got = await sha256File(join(p.dir, file)).catch(() => "missing");
      if (got !== want) throw new RuntimeFailure(`${join(p.dir, file)} is ${got === "missing" ? "missing" : "not the file its partition wrote (sha256 differs)"}; rerun that partition`);
    }
  }
}

/**
 * Dedups one hash range of every partition's keys into TEMP TABLE `kept` (p, lord, source_idx, file_idx, row_idx,
 * doc_hash, tokens): the documents that survive, by partition and their partition's ord. A partition's own duplicates
 * lost to a copy it kept, so they count against whichever copy wins globally.
 */
export async function dedupRange(db: BuildDb, parts: Partition[], enabled: boolean, range: HashRange, sourceCount: number): Promise<RangeCounts> {
  const union = (file: string) => parts.map((p, k) => `SELECT ${k} AS p, * FROM read_parquet(${sqlString(join(p.dir, file))}) WHERE ${inRange(range)}`).join(" UNION ALL ");
  await db.run(`CREATE OR REPLACE TEMP VIEW part_dups AS ${union(PARTITION_DUPLICATES)}`);
  await db.run(
    `CREATE OR REPLACE TEMP TABLE ranked AS
     SELECT p, ord AS lord, source_idx, file_idx, row_idx, doc_hash, tokens,
       ${enabled ? `row_number() OVER w` : `1`} AS occurrence,
       ${enabled ? `first_value(source_idx) OVER w` : `source_idx`} AS kept_by_source
     FROM (${union(PARTITION_DOCS)}) ${enabled ? `WINDOW w AS (PARTITION BY doc_hash ORDER BY source_idx, file_idx, row_idx)` : ""}`,
  );
  const rows = await db.rows<{ s: number; within: boolean; n: bigint }>(
    `SELECT s, within, count(*) AS n FROM (
       SELECT source_idx AS s, kept_by_source = source_idx AS within FROM ranked WHERE occurrence > 1
       UNION ALL
       SELECT d.source_idx, w.source_idx = d.source_idx FROM part_dups d JOIN (SELECT doc_hash, source_idx FROM ranked WHERE occurrence = 1) w USING (doc_hash)
     ) GROUP BY ALL`,
  );
  const perSource = Array.from({ length: sourceCount }, () => ({ within: 0, across: 0 }));
  for (const r of rows) perSource[r.s]![r.within ? "within" : "across"] = Number(r.n);
  const local = Number((await db.one<{ n: bigint }>(`SELECT count(*) AS n FROM part_dups`)).n);
  const cross = Number((await db.one<{ n: bigint }>(`SELECT count(*) AS n FROM ranked WHERE occurrence > 1`)).n);
  const removed = perSource.reduce((a, s) => a + s.within + s.across, 0);
  if (removed !== local + cross) throw new RuntimeFailure(`the partitions' duplicates do not match their documents (a duplicate whose kept copy is missing); rerun the partitions`);
  await db.run(
    `CREATE OR REPLACE TEMP TABLE kept AS
     SELECT p, lord, source_idx, file_idx, row_idx, doc_hash, tokens FROM ranked WHERE occurrence = 1`,
  );
  await db.run(`DROP TABLE ranked`);
  await db.run(`DROP VIEW part_dups`);
  return { perSource, local, cross };
}

/** Adds up the ranges' counts. */
export function sumCounts(ranges: RangeCounts[], sourceCount: number): RangeCounts {
  const total: RangeCounts = { perSource: Array.from({ length: sourceCount }, () => ({ within: 0, across: 0 })), local: 0, cross: 0 };
  for (const r of ranges) {
    r.perSource.forEach((s, i) => {
      total.perSource[i]!.within += s.within;
      total.perSource[i]!.across += s.across;
    });
    total.local += r.local;
    total.cross += r.cross;
  }
  return total;
}

/**
 * The plan's documents (PLAN_DOCS) from `kept`, whole, unsorted (the mixture orders them itself): each with its read
 * position in the partitions' chunks read one after another (the documents of the partitions before its own plus
 * its ord in its partition; merge.ts MergedTokens).
 */
export async function mergedDocs(db: BuildDb, parts: Partition[]): Promise<void> {
  let first = 0;
  const firsts = parts.map((p, k) => `(${k}, ${(first += p.record.documents) - p.record.documents})`);
  await db.run(`CREATE OR REPLACE TEMP TABLE part_first (p INTEGER, first_doc BIGINT)`);
  await db.run(`INSERT INTO part_first VALUES ${firsts.join(", ")}`);
  await db.run(
    `CREATE OR REPLACE TEMP TABLE merged_docs AS
     SELECT f.first_doc + k.lord AS read_pos, source_idx, file_idx, row_idx, doc_hash, tokens::UINTEGER AS tokens
     FROM kept k JOIN part_first f USING (p)`,
  );
  await db.run(`CREATE OR REPLACE TEMP VIEW ${PLAN_DOCS} AS SELECT * FROM merged_docs`);
}
