import { type BuildDb, sqlString } from "../util/duckdb.ts";

/**
 * The build's DuckDB tables, in one place (OUT/.work/build.duckdb; rebuilt from the inputs on every run):
 *   files        (source_idx, file_idx, path, sha256, rows)             — written by ingest
 *   documents    (source_idx, file_idx, row_idx, text, skip_reason)     — every row a reader saw (readers/, filters.ts)
 *   unique_docs  (ord, source_idx, file_idx, row_idx, doc_hash, text)   — kept documents in recipe order (dedup.ts)
 *   duplicates   (source_idx, file_idx, row_idx, doc_hash, kept_by_source) — rows dedup removed (dedup.ts)
 * The queries other stages need are functions here, so no stage reads another's table by hand.
 */
export async function createIngestTables(db: BuildDb): Promise<void> {
  await db.run(`DROP TABLE IF EXISTS documents`);
  await db.run(`DROP TABLE IF EXISTS files`);
  await db.run(`CREATE TABLE files (source_idx INTEGER, file_idx INTEGER, path VARCHAR, sha256 VARCHAR, rows BIGINT)`);
  await db.run(`CREATE TABLE documents (source_idx INTEGER, file_idx INTEGER, row_idx BIGINT, text VARCHAR, skip_reason VARCHAR)`);
}

/** Records a file once its rows are in `documents`. */
export async function recordFile(db: BuildDb, sourceIdx: number, fileIdx: number, path: string, sha256: string): Promise<void> {
  await db.run(
    `INSERT INTO files SELECT ${sourceIdx}, ${fileIdx}, ${sqlString(path)}, ${sqlString(sha256)},
       (SELECT count(*) FROM documents WHERE source_idx = ${sourceIdx} AND file_idx = ${fileIdx})`,
  );
}

export async function documentCount(db: BuildDb): Promise<number> {
  return Number((await db.one<{ n: bigint }>(`SELECT count(*) AS n FROM documents`)).n);
}

export async function uniqueDocCount(db: BuildDb): Promise<number> {
  return Number((await db.one<{ n: bigint }>(`SELECT count(*) AS n FROM unique_docs`)).n);
}

/** Texts of unique documents [first, first + count), in order. */
export async function uniqueDocTexts(db: BuildDb, first: number, count: number): Promise<string[]> {
  const rows = await db.rows<{ text: string }>(`SELECT text FROM unique_docs WHERE ord >= ${first} AND ord < ${first + count} ORDER BY ord`);
  return rows.map((r) => r.text);
}

/** Rows per source and skip reason (NULL: a document). */
export function rowsBySkipReason(db: BuildDb) {
  return db.rows<{ s: number; reason: string | null; n: bigint }>(`SELECT source_idx AS s, skip_reason AS reason, count(*) AS n FROM documents GROUP BY ALL`);
}

/** Removed duplicates per source, split by whether the kept copy is in the same source. */
export function duplicatesBySource(db: BuildDb) {
  return db.rows<{ s: number; within: boolean; n: bigint }>(`SELECT source_idx AS s, kept_by_source = source_idx AS within, count(*) AS n FROM duplicates GROUP BY ALL`);
}

export function fileRows(db: BuildDb) {
  return db.rows<{ s: number; f: number; rows: bigint }>(`SELECT source_idx AS s, file_idx AS f, rows FROM files`);
}
