import { DOCUMENTS } from "../schema.ts";
import type { Recipe } from "../../recipe/schema.ts";
import type { BuildDb } from "../../util/duckdb.ts";

/**
 * SQL for the dedup key. nfc_trim: Unicode NFC, then leading and trailing whitespace (RE2 `\s`: space,
 * \t, \n, \v, \f, \r) removed. The second form also collapses whitespace runs to one space and lower-cases.
 */
export function normalizedTextSql(normalization: Recipe["dedup"]["normalization"]): string {
  const trimmed = `regexp_replace(nfc_normalize(text), '^\\s+|\\s+$', '', 'g')`;
  if (normalization === "nfc_trim") return trimmed;
  return `lower(regexp_replace(${trimmed}, '\\s+', ' ', 'g'))`;
}

/**
 * Exact dedup across all sources on the 128-bit MD5 of the normalised text; the first occurrence in
 * recipe order (source, file, row) wins. Writes `unique_docs` (kept documents, in that order, with the rowid of
 * their text: the text is not copied) and `duplicates` (each removed row and the source that kept its text).
 */
export interface DedupResult {
  kept: number;
  removed: number;
  /** per source: the kept documents and their text's bytes (what tokenisation will read) */
  keptBySource: Map<number, { documents: number; bytes: number }>;
}

export async function dedup(db: BuildDb, recipe: Recipe): Promise<DedupResult> {
  const enabled = recipe.dedup.enabled;
  const key = enabled ? `md5(${normalizedTextSql(recipe.dedup.normalization)})` : `md5(text)`;
  await db.run(`DROP TABLE IF EXISTS ranked`);
  await db.run(
    `CREATE TEMP TABLE ranked AS
     SELECT source_idx, file_idx, row_idx, rowid AS doc_row, ${key} AS doc_hash, strlen(text) AS text_bytes,
       ${enabled ? `row_number() OVER w` : `1`} AS occurrence,
       ${enabled ? `first_value(source_idx) OVER w` : `source_idx`} AS kept_by_source
     FROM ${DOCUMENTS} WHERE skip_reason IS NULL
     ${enabled ? `WINDOW w AS (PARTITION BY doc_hash ORDER BY source_idx, file_idx, row_idx)` : ""}`,
  );
  await db.run(`DROP TABLE IF EXISTS unique_docs`);
  await db.run(
    `CREATE TABLE unique_docs AS
     SELECT row_number() OVER (ORDER BY source_idx, file_idx, row_idx) - 1 AS ord, source_idx, file_idx, row_idx, doc_hash, doc_row, text_bytes
     FROM ranked WHERE occurrence = 1 ORDER BY ord`,
  );
  await db.run(`DROP TABLE IF EXISTS duplicates`);
  await db.run(
    `CREATE TABLE duplicates AS SELECT source_idx, file_idx, row_idx, doc_hash, kept_by_source FROM ranked WHERE occurrence > 1`,
  );
  await db.run(`DROP TABLE ranked`);
  const { removed } = await db.one<{ removed: bigint }>(`SELECT count(*) AS removed FROM duplicates`);
  return { removed: Number(removed), ...(await keptDocuments(db)) };
}

/** What tokenisation will read, for the checks before it (disk-estimate.ts, select.ts): after dedup, and again after near-dedup. */
export async function keptDocuments(db: BuildDb): Promise<Omit<DedupResult, "removed">> {
  const bySource = await db.rows<{ s: number; d: bigint; b: bigint }>(`SELECT source_idx AS s, count(*) AS d, sum(text_bytes) AS b FROM unique_docs GROUP BY ALL`);
  const keptBySource = new Map(bySource.map((r) => [r.s, { documents: Number(r.d), bytes: Number(r.b) }]));
  return { kept: [...keptBySource.values()].reduce((a, k) => a + k.documents, 0), keptBySource };
}
