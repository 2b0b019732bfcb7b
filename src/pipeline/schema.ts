import { rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { BuildDb } from "../util/duckdb.ts";
import { sqlString } from "../util/sql.ts";

/** Skipped rows named one by one in the manifest, per source and reason (all are counted). */
export const SKIPPED_ROWS_KEPT = 100;

/**
 * The build's DuckDB tables, in one place (OUT/.work/build.duckdb; rebuilt from the inputs on every run):
 *   files        (source_idx, file_idx, path, sha256, rows)             — written by ingest
 *   corpus.documents (source_idx, file_idx, row_idx, text, skip_reason) — every row a reader saw (readers/, filters.ts)
 *   unique_docs  (ord, source_idx, file_idx, row_idx, doc_hash, doc_row, text_bytes) — kept documents in recipe order (dedup.ts, near-dedup.ts);
 *                doc_row is the document's rowid in corpus.documents, where its text is
 *   duplicates   (source_idx, file_idx, row_idx, doc_hash, kept_by_source) — rows dedup removed (dedup.ts)
 *   near_duplicates (source_idx, file_idx, row_idx, kept_source, kept_file, kept_row, jaccard) — documents MinHash
 *                removed, each with the cluster's kept document (near-dedup.ts; only with dedup.minhash)
 *   near_duplicate_samples (cluster, member, source_idx, file_idx, row_idx, first_lines) — the first clusters, for
 *                `inspect --near-duplicates`
 *   row_counts   (source_idx, skip_reason, n)                          — rows per source and skip reason (dropCorpus)
 *   skipped_rows (source_idx, skip_reason, file_idx, row_idx)          — the first SKIPPED_ROWS_KEPT skipped rows per source and reason
 *   doc_tokens   (ord, tokens)                                         — each unique document's ids, specials not counted (tokenize.ts)
 * and the mixture plan's tables (plan-tables.ts).
 * The text is held once, in its own database file (OUT/.work/corpus.duckdb), which is deleted once every document
 * is tokenised: what a build keeps in .work is then its token chunks and these small tables.
 * The queries other stages need are functions here, so no stage reads another's table by hand.
 */
export const DOCUMENTS = "corpus.documents";
export const DOC_TOKENS = "doc_tokens";
/** The text's database file, beside the work database. */
export const CORPUS_DB = "corpus.duckdb";

function corpusPath(db: BuildDb): string {
  return db.path === ":memory:" ? ":memory:" : join(dirname(db.path), CORPUS_DB);
}

/** Deletes the text's database files (the database must be detached, or closed). */
export async function removeCorpusFiles(db: BuildDb): Promise<void> {
  const path = corpusPath(db);
  if (path !== ":memory:") for (const p of [path, `${path}.wal`]) await rm(p, { force: true });
}

export async function createIngestTables(db: BuildDb): Promise<void> {
  await dropCorpus(db, false);
  await db.run(`ATTACH ${sqlString(corpusPath(db))} AS corpus`);
  await db.run(`DROP TABLE IF EXISTS files`);
  await db.run(`DROP TABLE IF EXISTS row_counts`);
  await db.run(`CREATE TABLE files (source_idx INTEGER, file_idx INTEGER, path VARCHAR, sha256 VARCHAR, rows BIGINT)`);
  await db.run(`CREATE TABLE ${DOCUMENTS} (source_idx INTEGER, file_idx INTEGER, row_idx BIGINT, text VARCHAR, skip_reason VARCHAR)`);
}

/**
 * Once every kept document is tokenised, the text is no longer needed: the counts per skip reason are kept in
 * row_counts (when `count`), and the corpus database is detached and deleted.
 */
export async function dropCorpus(db: BuildDb, count = true): Promise<void> {
  if ((await db.rows(`SELECT 1 FROM duckdb_databases() WHERE database_name = 'corpus'`)).length) {
    if (count) {
      await db.run(`CREATE OR REPLACE TABLE row_counts AS SELECT source_idx, skip_reason, count(*) AS n FROM ${DOCUMENTS} GROUP BY ALL`);
      await db.run(
        `CREATE OR REPLACE TABLE skipped_rows AS SELECT source_idx, skip_reason, file_idx, row_idx FROM (
           SELECT source_idx, skip_reason, file_idx, row_idx, row_number() OVER (PARTITION BY source_idx, skip_reason ORDER BY file_idx, row_idx) AS k
           FROM ${DOCUMENTS} WHERE skip_reason IS NOT NULL) WHERE k <= ${SKIPPED_ROWS_KEPT} ORDER BY source_idx, skip_reason, file_idx, row_idx`,
      );
    }
    await db.run(`DETACH corpus`);
  }
  await removeCorpusFiles(db);
}

/** Records a file once its rows are in `documents`. */
export async function recordFile(db: BuildDb, sourceIdx: number, fileIdx: number, path: string, sha256: string): Promise<void> {
  await db.run(
    `INSERT INTO files SELECT ${sourceIdx}, ${fileIdx}, ${sqlString(path)}, ${sqlString(sha256)},
       (SELECT count(*) FROM ${DOCUMENTS} WHERE source_idx = ${sourceIdx} AND file_idx = ${fileIdx})`,
  );
}

export async function documentCount(db: BuildDb): Promise<number> {
  return Number((await db.one<{ n: bigint }>(`SELECT count(*) AS n FROM ${DOCUMENTS}`)).n);
}

/** Unique documents, less those of the `exceptSources`. */
export async function uniqueDocCount(db: BuildDb, exceptSources: readonly number[] = []): Promise<number> {
  const where = exceptSources.length > 0 ? ` WHERE source_idx NOT IN (${exceptSources.join(", ")})` : "";
  return Number((await db.one<{ n: bigint }>(`SELECT count(*) AS n FROM unique_docs${where}`)).n);
}

/**
 * Texts of unique documents [first, first + count), in order. They are read from corpus.documents by rowid, whose
 * range DuckDB scans alone (row groups outside it are skipped), so each chunk costs its own rows, not the table's.
 */
export async function uniqueDocTexts(db: BuildDb, first: number, count: number): Promise<string[]> {
  return (await uniqueDocBatch(db, first, count)).texts;
}

/** The same, with their ords, less the documents of the `exceptSources`. */
export async function uniqueDocBatch(db: BuildDb, first: number, count: number, exceptSources: readonly number[] = []): Promise<{ ords: number[]; texts: string[] }> {
  const except = exceptSources.length > 0 ? ` AND source_idx NOT IN (${exceptSources.join(", ")})` : "";
  const keys = await db.rows<{ ord: bigint; doc_row: bigint }>(`SELECT ord, doc_row FROM unique_docs WHERE ord >= ${first} AND ord < ${first + count}${except} ORDER BY ord`);
  if (keys.length === 0) return { ords: [], texts: [] };
  const rows = keys.map((k) => k.doc_row);
  let lo = rows[0]!;
  let hi = rows[0]!;
  for (const r of rows) {
    if (r < lo) lo = r;
    if (r > hi) hi = r;
  }
  const found = await db.rows<{ id: bigint; text: string }>(
    `SELECT rowid AS id, text FROM ${DOCUMENTS} WHERE rowid BETWEEN ${lo} AND ${hi} AND rowid IN (${rows.join(",")})`,
  );
  const byRow = new Map(found.map((f) => [f.id, f.text]));
  const texts = rows.map((r) => {
    const text = byRow.get(r);
    if (text === undefined) throw new Error(`unique document at rowid ${r} has no text in ${DOCUMENTS}`);
    return text;
  });
  return { ords: keys.map((k) => Number(k.ord)), texts };
}

/** Every unique document's text by ord: a SELECT of (ord, text), for a query that joins many of them at once. */
export const UNIQUE_DOC_TEXTS = `SELECT u.ord, d.text FROM unique_docs u JOIN ${DOCUMENTS} d ON d.rowid = u.doc_row`;

/** Texts of the unique documents at these ords (any order, repeats allowed), in the order given. */
export async function uniqueDocTextsAt(db: BuildDb, ords: readonly number[]): Promise<string[]> {
  if (ords.length === 0) return [];
  const found = await db.rows<{ ord: bigint; text: string }>(`${UNIQUE_DOC_TEXTS} WHERE u.ord IN (${[...new Set(ords)].join(",")})`);
  const byOrd = new Map(found.map((f) => [Number(f.ord), f.text]));
  return ords.map((o) => {
    const text = byOrd.get(o);
    if (text === undefined) throw new Error(`unique document ${o} has no text in ${DOCUMENTS}`);
    return text;
  });
}

/** The first skipped rows of each source and reason, as dropCorpus kept them, in file and row order. */
export function skippedRows(db: BuildDb) {
  return db.rows<{ s: number; reason: string; f: number; row: bigint }>(`SELECT source_idx AS s, skip_reason AS reason, file_idx AS f, row_idx AS row FROM skipped_rows ORDER BY s, reason, f, row`);
}

/** Rows per source and skip reason (NULL: a document), as dropCorpus counted them. */
export function rowsBySkipReason(db: BuildDb) {
  return db.rows<{ s: number; reason: string | null; n: bigint }>(`SELECT source_idx AS s, skip_reason AS reason, n FROM row_counts`);
}

/** Removed duplicates per source, split by whether the kept copy is in the same source. */
export function duplicatesBySource(db: BuildDb) {
  return db.rows<{ s: number; within: boolean; n: bigint }>(`SELECT source_idx AS s, kept_by_source = source_idx AS within, count(*) AS n FROM duplicates GROUP BY ALL`);
}

/** Near-duplicates removed per source, split by whether the cluster's kept document is in the same source. */
export function nearDuplicatesBySource(db: BuildDb) {
  return db.rows<{ s: number; within: boolean; n: bigint }>(`SELECT source_idx AS s, kept_source = source_idx AS within, count(*) AS n FROM near_duplicates GROUP BY ALL`);
}

/** The sample clusters near-dedup kept (near-dedup.ts), members in order, the kept document first. */
export async function nearDuplicateSamples(db: BuildDb) {
  const rows = await db.rows<{ cluster: number; member: number; s: number; f: number; row: bigint; line: string }>(
    `SELECT cluster, member, source_idx AS s, file_idx AS f, row_idx AS row, first_lines AS line FROM near_duplicate_samples ORDER BY cluster, member`,
  );
  const clusters: { source: number; file: number; row: number; firstLines: string; kept: boolean }[][] = [];
  for (const r of rows) (clusters[r.cluster] ??= []).push({ source: r.s, file: r.f, row: Number(r.row), firstLines: r.line, kept: r.member === 0 });
  return clusters;
}

export function fileRows(db: BuildDb) {
  return db.rows<{ s: number; f: number; rows: bigint }>(`SELECT source_idx AS s, file_idx AS f, rows FROM files`);
}
