/**
 * Near-duplicate removal by MinHash LSH, after the exact dedup (dedup.ts), over the documents it kept (unique_docs,
 * in recipe order). Each document's text is prepared (NFKC and lower case where it holds non-ASCII) and the native
 * addon makes its words and hashes them into `bands` band keys (cx_minhash_bands; the words are near-dedup-text.ts's
 * shingleWords). The keys go into DuckDB, never into Node objects; DuckDB finds the buckets, one band at a time, and
 * each document in a bucket is joined to the bucket's first document (with `verify_jaccard`, only when their true
 * shingle Jaccard reaches it). Union-find over those candidate pairs gives the clusters; in each, the first document
 * in recipe order (source, file, row) is kept, as exact dedup keeps it, and the others are removed. unique_docs is
 * then renumbered without them. Nothing here depends on the worker count: the same keys, the same clusters, the
 * same bytes.
 */
import type { MinhashSpec } from "../../recipe/schema.ts";
import { loadAddon } from "../../native/addon.ts";
import type { AppendType, BuildDb, RowAppender } from "../../util/duckdb.ts";
import { RuntimeFailure } from "../../util/errors.ts";
import type { NearDuplicateReport } from "../output/manifest.ts";
import { nearDuplicateSamples, UNIQUE_DOC_TEXTS, uniqueDocBatch, uniqueDocCount, uniqueDocTextsAt } from "../schema.ts";
import { clusterNearDuplicates, type ClusterResult } from "./near-dedup-clusters.ts";
import { NEAR_DUPLICATE_WORDS, prepareForShingles } from "./near-dedup-text.ts";

/** Documents hashed per call into the addon. */
const BATCH_DOCS = 4096;

/** Band b's column in a band-keys table. */
export const bandColumn = (band: number): string => `k${band}`;

/**
 * A band-keys table's columns: the document's id (ord, or doc_row), then one BIGINT key a band. One row a document
 * (not one a band) keeps appending cheap, and lets clustering read one band's keys at a time.
 */
export function bandKeyColumns(id: string, bands: number): [string, AppendType][] {
  return [[id, "BIGINT"], ...Array.from({ length: bands }, (_, b): [string, AppendType] => [bandColumn(b), "BIGINT"])];
}

/** A row (id, k0 … k{bands-1}) for each text of a batch that has words (cx_minhash_bands' `shingled`). */
export function appendBandKeys(app: RowAppender, ids: readonly (number | bigint)[], hashed: { keys: BigUint64Array; shingled: Uint8Array }, bands: number): void {
  const kept: number[] = [];
  for (let i = 0; i < ids.length; i++) if (hashed.shingled[i]) kept.push(i);
  const idColumn = BigInt64Array.from(kept, (i) => BigInt(ids[i]!));
  // The keys are row-major, a text's bands together; each band's column is gathered as 32-bit halves, which copies
  // the same 64 bits without making a bigint for each (DuckDB's BIGINT is signed: the same bits again).
  const from = new Int32Array(hashed.keys.buffer, hashed.keys.byteOffset, hashed.keys.length * 2);
  const columns = Array.from({ length: bands }, () => new Int32Array(kept.length * 2));
  kept.forEach((i, j) => {
    for (let b = 0; b < bands; b++) {
      const at = (i * bands + b) * 2;
      columns[b]![j * 2] = from[at]!;
      columns[b]![j * 2 + 1] = from[at + 1]!;
    }
  });
  app.appendColumns([idColumn, ...columns.map((c) => new BigInt64Array(c.buffer))]);
}

/** The table the quality stage leaves band keys in, by doc_row (bandKeyColumns), for the sources it read (its `hashedSources`). */
export const ROW_BANDS = "minhash_row_bands";
/** The band keys of the unique documents, by ord (bandKeyColumns): what near-dedup clusters, and a partition writes. */
export const MINHASH_KEYS = "minhash_keys";

/** One band's (ord, key) rows of MINHASH_KEYS, for clusterNearDuplicates. */
export const minhashKeysBand = (band: number): string => `SELECT ord, ${bandColumn(band)} AS key FROM ${MINHASH_KEYS}`;

/** MINHASH_KEYS as one (ord, band, key) row a band: the layout of a partition's minhash.parquet. */
export function minhashKeysByBand(bands: number): string {
  return Array.from({ length: bands }, (_, b) => `SELECT ord, ${b} AS band, ${bandColumn(b)} AS key FROM ${MINHASH_KEYS}`).join(" UNION ALL ");
}

/**
 * Band keys of every unique document into MINHASH_KEYS; documents with no words have none.
 * `hashedSources`: sources whose documents the quality stage already hashed while it had their text (ROW_BANDS);
 * their keys are joined in, and only the other sources' texts are read here.
 */
export async function hashDocuments(
  db: BuildDb,
  spec: MinhashSpec,
  threads: number,
  onProgress?: (done: number, total: number) => void,
  hashedSources: readonly number[] = [],
): Promise<void> {
  const addon = loadAddon();
  const total = await uniqueDocCount(db);
  const app = await db.appender(MINHASH_KEYS, bandKeyColumns("ord", spec.bands));
  try {
    // The next batch's texts are read and prepared while the addon hashes this one.
    const prepare = async (first: number) => {
      const batch = await uniqueDocBatch(db, first, BATCH_DOCS, hashedSources);
      return { ords: batch.ords, texts: batch.texts.map(prepareForShingles) };
    };
    const rest = hashedSources.length === 0 ? total : await uniqueDocCount(db, hashedSources);
    let next = rest > 0 ? prepare(0) : undefined;
    for (let first = 0; rest > 0 && first < total; first += BATCH_DOCS) {
      const prepared = await next!;
      const hashing = addon.minhashBands(prepared.texts, spec, threads);
      next = first + BATCH_DOCS < total ? prepare(first + BATCH_DOCS) : undefined;
      // A failure here leaves `next` unread: its own failure, if any, must not go unhandled.
      next?.catch(() => undefined);
      const hashed = await hashing.catch((error: Error) => {
        throw new RuntimeFailure(`MinHash of documents ${first} to ${first + BATCH_DOCS - 1}: ${error.message}`);
      });
      appendBandKeys(app, prepared.ords, hashed, spec.bands);
      onProgress?.(Math.min(first + BATCH_DOCS, total), total);
    }
    app.close();
  } catch (error) {
    app.abandon();
    throw error;
  }
  if (hashedSources.length > 0) {
    const keys = Array.from({ length: spec.bands }, (_, b) => `r.${bandColumn(b)}`).join(", ");
    await db.run(`INSERT INTO ${MINHASH_KEYS} SELECT u.ord, ${keys} FROM unique_docs u JOIN ${ROW_BANDS} r USING (doc_row)`);
    await db.run(`DROP TABLE ${ROW_BANDS}`);
    onProgress?.(total, total);
  }
}

/** What the manifest says of near-dedup (a build's, or a merge's), with the sample clusters near_duplicate_samples holds. */
export async function nearDuplicateReport(db: BuildDb, spec: MinhashSpec, r: ClusterResult): Promise<NearDuplicateReport> {
  return {
    method: `MinHash LSH: ${spec.bands} bands × ${spec.rows} rows of 64-bit hashes over ${spec.ngram}-word shingles; candidates joined by union-find, the first document of each cluster in recipe order kept`,
    words: NEAR_DUPLICATE_WORDS,
    ngram: spec.ngram,
    bands: spec.bands,
    rows: spec.rows,
    seed: spec.seed,
    verify_jaccard: spec.verify_jaccard ?? null,
    candidate_pairs: r.candidatePairs,
    pairs_rejected: r.rejectedPairs,
    clusters: r.clusters,
    documents_removed: r.removed,
    samples: await nearDuplicateSamples(db),
  };
}

/** Removes near-duplicates from unique_docs (see the file's comment); records them in `near_duplicates`. */
export async function nearDedup(
  db: BuildDb,
  spec: MinhashSpec,
  threads: number,
  onProgress?: (done: number, total: number) => void,
  hashedSources: readonly number[] = [],
): Promise<ClusterResult> {
  await hashDocuments(db, spec, threads, onProgress, hashedSources);
  const found = await clusterNearDuplicates(db, spec, minhashKeysBand, "unique_docs", { at: (ords) => uniqueDocTextsAt(db, ords), table: UNIQUE_DOC_TEXTS }, threads);
  await db.run(`DROP TABLE ${MINHASH_KEYS}`);
  await db.run(
    `CREATE OR REPLACE TABLE unique_docs_kept AS
     SELECT row_number() OVER (ORDER BY ord) - 1 AS ord, source_idx, file_idx, row_idx, doc_hash, doc_row, text_bytes
     FROM unique_docs WHERE ord NOT IN (SELECT ord FROM near_removed_ords) ORDER BY ord`,
  );
  await db.run(`DROP TABLE unique_docs`);
  await db.run(`ALTER TABLE unique_docs_kept RENAME TO unique_docs`);
  await db.run(`DROP TABLE near_removed_ords`);
  return found;
}
