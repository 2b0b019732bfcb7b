/**
 * Near-duplicate clusters from MinHash band keys (a band's (ord, key) rows at a time, ords in recipe order), shared by
 * a build (near-dedup.ts, over unique_docs) and a merge (partitioned/merge-near-dedup.ts, over the partitions'
 * documents that survive the global dedup): documents in the same band bucket are candidates, each paired with its
 * bucket's first document; with `verify_jaccard` a pair joins only at that true shingle Jaccard; union-find over
 * the pairs keeps each cluster's first document. Leaves `near_removed_ords (ord, kept_ord)` for the caller to apply,
 * `near_duplicates` (who went, for whom) and `near_duplicate_samples`.
 */
import type { MinhashSpec } from "../../recipe/schema.ts";
import type { BuildDb } from "../../util/duckdb.ts";
import { loadAddon } from "../../native/addon.ts";
import { inOrder } from "../../util/in-order.ts";
import { prepareBytesForShingles, prepareForShingles } from "./near-dedup-text.ts";

/** The texts of documents by ord (repeats allowed), in the order asked. */
export type TextsAt = (ords: number[]) => Promise<string[]>;

/**
 * Where clustering reads texts: `at`, by ord (the samples, and verification's pages by default); `table`, where the
 * texts are in the database, a SELECT of (ord, text) over every document, which verification joins to its pairs once.
 */
export interface DocumentTexts {
  at: TextsAt;
  table?: string;
}

/**
 * Candidate pairs verified per page: 8,192 pairs hold about 16 MB of text at 1 KB a document (held twice over where
 * the texts are read as bytes: DuckDB's chunks and the addon's copies; three times where they are JavaScript strings),
 * and two pages are in hand at once (inOrder).
 */
const VERIFY_PAIRS = 8192;
/** Clusters kept as samples for `inspect --near-duplicates`, and the characters shown of each member's first lines. */
export const NEAR_DUPLICATE_SAMPLES = 10;
const SAMPLE_LINE_CHARS = 160;

export interface ClusterResult {
  removed: number;
  clusters: number;
  /** candidate pairs from shared band keys, and how many verify_jaccard turned down */
  candidatePairs: number;
  rejectedPairs: number;
}

/** A band's band keys: a SELECT of (ord, key) rows. */
export type BandKeys = (band: number) => string;

/**
 * Candidate pairs (a, b), a < b: each document of a bucket with the bucket's first; a pair sharing several buckets
 * once. One band at a time, so DuckDB's window holds one key a document, not `bands` of them.
 */
async function candidatePairs(db: BuildDb, spec: MinhashSpec, bandKeys: BandKeys): Promise<number> {
  await db.run(`CREATE OR REPLACE TEMP TABLE near_band_pairs (a BIGINT, b BIGINT)`);
  for (let band = 0; band < spec.bands; band++) {
    await db.run(
      `INSERT INTO near_band_pairs
       SELECT first_ord, ord FROM (SELECT ord, min(ord) OVER (PARTITION BY key) AS first_ord FROM (${bandKeys(band)})) WHERE ord <> first_ord`,
    );
  }
  await db.run(`CREATE OR REPLACE TEMP TABLE near_pairs AS SELECT DISTINCT a, b FROM near_band_pairs`);
  await db.run(`DROP TABLE near_band_pairs`);
  return Number((await db.one<{ n: bigint }>(`SELECT count(*) AS n FROM near_pairs`)).n);
}

/** A page of verification: pairs (a[i], b[i]) of verify_order and their texts, prepared for the addon. */
interface PairPage {
  a: bigint[];
  b: bigint[];
  textA: (string | Uint8Array)[];
  textB: (string | Uint8Array)[];
}

/** Reads verification's page at pair `lo`; drop() removes what reading needed. */
async function pairPages(db: BuildDb, texts: DocumentTexts): Promise<{ read: (lo: number) => Promise<PairPage>; drop: () => Promise<void> }> {
  const page = (lo: number) => `k >= ${lo} AND k < ${lo + VERIFY_PAIRS}`;
  if (!texts.table) {
    return {
      read: async (lo) => {
        const rows = await db.rows<{ a: bigint; b: bigint }>(`SELECT a, b FROM verify_order WHERE ${page(lo)} ORDER BY k`);
        const both = (await texts.at(rows.flatMap((r) => [Number(r.a), Number(r.b)]))).map(prepareForShingles);
        return { a: rows.map((r) => r.a), b: rows.map((r) => r.b), textA: rows.map((_, i) => both[2 * i]!), textB: rows.map((_, i) => both[2 * i + 1]!) };
      },
      drop: async () => undefined,
    };
  }
  // Both texts of every pair in one join, stored in page order, so a page reads its own row groups. Looking each
  // page's documents up in the corpus scanned the corpus once a page: time growing with the square of its size.
  await db.run(
    `CREATE OR REPLACE TEMP TABLE verify_texts AS
     WITH docs AS (SELECT ord, text FROM (${texts.table}) WHERE ord IN (SELECT a FROM verify_order UNION SELECT b FROM verify_order))
     SELECT v.k, v.a, v.b, ta.text AS text_a, tb.text AS text_b FROM verify_order v JOIN docs ta ON ta.ord = v.a JOIN docs tb ON tb.ord = v.b ORDER BY v.k`,
  );
  // A page's texts come as their UTF-8 bytes, not as strings: no row objects or strings pile up on the JavaScript
  // heap between its collections (it held up to 222 MB here at 1.6 GB), and ASCII texts go to the addon untouched.
  return {
    read: async (lo) => {
      const [a, b, textA, textB] = (await db.columns(`SELECT a, b, encode(text_a), encode(text_b) FROM verify_texts WHERE ${page(lo)} ORDER BY k`)) as [
        bigint[],
        bigint[],
        Uint8Array[],
        Uint8Array[],
      ];
      return { a, b, textA: textA.map(prepareBytesForShingles), textB: textB.map(prepareBytesForShingles) };
    },
    drop: () => db.run(`DROP TABLE verify_texts`),
  };
}

/** verify_jaccard: each pair's true shingle Jaccard, in `near_pair_jaccard`; the pairs under the threshold leave near_pairs. */
async function verifyPairs(db: BuildDb, spec: MinhashSpec, threshold: number, texts: DocumentTexts, threads: number): Promise<number> {
  // The pairs numbered, so each page holds VERIFY_PAIRS of them however they fall among the documents.
  await db.run(`CREATE OR REPLACE TEMP TABLE verify_order AS SELECT a, b, row_number() OVER (ORDER BY b, a) - 1 AS k FROM near_pairs`);
  const pairs = Number((await db.one<{ n: bigint }>(`SELECT count(*) AS n FROM verify_order`)).n);
  const pages = await pairPages(db, texts);
  const app = await db.appender("near_pair_jaccard", [
    ["a", "BIGINT"],
    ["b", "BIGINT"],
    ["jaccard", "DOUBLE"],
  ]);
  try {
    await inOrder(
      Math.ceil(pairs / VERIFY_PAIRS),
      1,
      async (k) => {
        const page = await pages.read(k * VERIFY_PAIRS);
        const j = await loadAddon().shingleJaccard(page.textA, page.textB, spec, threads);
        return { page, j };
      },
      ({ page, j }) => app.appendColumns([page.a, page.b, j]),
    );
    app.close();
  } catch (error) {
    app.abandon();
    throw error;
  }
  await pages.drop();
  await db.run(`DROP TABLE verify_order`);
  const { n } = await db.one<{ n: bigint }>(`SELECT count(*) AS n FROM near_pair_jaccard WHERE jaccard < ${threshold}`);
  await db.run(`DELETE FROM near_pairs p USING near_pair_jaccard j WHERE p.a = j.a AND p.b = j.b AND j.jaccard < ${threshold}`);
  return Number(n);
}

/** Pairs read into the union-find per query. */
const UNION_PAGE = 1 << 16;

/**
 * Union-find over the candidate pairs, on dense indices of the documents in a pair (in ord order, so the smallest
 * index of a cluster is its first document): `near_removed_ords` (ord, kept_ord) for every document but each
 * cluster's first. Memory: 4 bytes a document in a pair.
 */
async function clusters(db: BuildDb): Promise<{ removed: number; clusters: number }> {
  await db.run(
    `CREATE OR REPLACE TEMP TABLE pair_nodes AS
     SELECT ord, row_number() OVER (ORDER BY ord) - 1 AS idx FROM (SELECT a AS ord FROM near_pairs UNION SELECT b FROM near_pairs)`,
  );
  await db.run(
    `CREATE OR REPLACE TEMP TABLE pair_edges AS
     SELECT na.idx AS ia, nb.idx AS ib FROM near_pairs p JOIN pair_nodes na ON na.ord = p.a JOIN pair_nodes nb ON nb.ord = p.b`,
  );
  const nodes = Number((await db.one<{ n: bigint }>(`SELECT count(*) AS n FROM pair_nodes`)).n);
  const parent = new Int32Array(nodes).map((_, i) => i);
  const find = (x: number): number => {
    while (parent[x] !== x) {
      parent[x] = parent[parent[x]!]!;
      x = parent[x]!;
    }
    return x;
  };
  for (let lo = 0; lo < nodes; lo += UNION_PAGE) {
    const edges = await db.rows<{ ia: bigint; ib: bigint }>(`SELECT ia, ib FROM pair_edges WHERE ib >= ${lo} AND ib < ${lo + UNION_PAGE}`);
    for (const e of edges) {
      const ra = find(Number(e.ia));
      const rb = find(Number(e.ib));
      // The smaller index (the earlier document) stays the root: it is the one kept.
      if (ra < rb) parent[rb] = ra;
      else if (rb < ra) parent[ra] = rb;
    }
  }
  const app = await db.appender("near_removed", [
    ["idx", "BIGINT"],
    ["kept_idx", "BIGINT"],
  ]);
  let removed = 0;
  let roots = 0;
  try {
    for (let i = 0; i < nodes; i++) {
      const r = find(i);
      if (r === i) roots++;
      else {
        app.append([i, r]);
        removed++;
      }
    }
    app.close();
  } catch (error) {
    app.abandon();
    throw error;
  }
  await db.run(
    `CREATE OR REPLACE TEMP TABLE near_removed_ords AS
     SELECT n.ord, k.ord AS kept_ord FROM near_removed r JOIN pair_nodes n ON n.idx = r.idx JOIN pair_nodes k ON k.idx = r.kept_idx`,
  );
  for (const t of ["near_removed", "pair_nodes", "pair_edges"]) await db.run(`DROP TABLE ${t}`);
  return { removed, clusters: roots };
}

/** Members of a sample cluster shown: its first document and the next ones removed. */
const SAMPLE_MEMBERS = 5;

/** The first clusters in recipe order, each member's first lines (joined by " / "), for `inspect --near-duplicates`. */
async function keepSamples(db: BuildDb, docs: string, textsAt: TextsAt): Promise<void> {
  const members = await db.rows<{ cluster: bigint; member: bigint; ord: bigint; s: number; f: number; row: bigint }>(
    `WITH firsts AS (SELECT DISTINCT kept_ord FROM near_removed_ords ORDER BY kept_ord LIMIT ${NEAR_DUPLICATE_SAMPLES}),
     m AS (SELECT kept_ord, kept_ord AS ord FROM firsts UNION ALL SELECT r.kept_ord, r.ord FROM near_removed_ords r JOIN firsts USING (kept_ord)),
     numbered AS (SELECT dense_rank() OVER (ORDER BY kept_ord) - 1 AS cluster, row_number() OVER (PARTITION BY kept_ord ORDER BY ord) - 1 AS member, ord FROM m)
     SELECT n.cluster, n.member, n.ord, u.source_idx AS s, u.file_idx AS f, u.row_idx AS row
     FROM numbered n JOIN ${docs} u USING (ord) WHERE n.member < ${SAMPLE_MEMBERS} ORDER BY n.cluster, n.member`,
  );
  const texts = await textsAt(members.map((m) => Number(m.ord)));
  await db.run(`CREATE OR REPLACE TABLE near_duplicate_samples (cluster INTEGER, member INTEGER, source_idx INTEGER, file_idx INTEGER, row_idx BIGINT, first_lines VARCHAR)`);
  for (const [i, m] of members.entries()) {
    const lines = texts[i]!.split("\n").map((l) => l.trim()).filter((l) => l !== "").join(" / ");
    const line = lines.length > SAMPLE_LINE_CHARS ? `${lines.slice(0, SAMPLE_LINE_CHARS)}…` : lines;
    await db.run(`INSERT INTO near_duplicate_samples VALUES (${Number(m.cluster)}, ${Number(m.member)}, ${m.s}, ${m.f}, ${m.row}, $line)`, { line });
  }
}

/**
 * Clusters the documents whose band keys `bandKeys` gives, over `docs`, a table of (ord, source_idx, file_idx,
 * row_idx) in recipe order, reading texts from `texts` for verification and samples.
 */
export async function clusterNearDuplicates(db: BuildDb, spec: MinhashSpec, bandKeys: BandKeys, docs: string, texts: DocumentTexts, threads: number): Promise<ClusterResult> {
  const candidates = await candidatePairs(db, spec, bandKeys);
  const rejected = spec.verify_jaccard !== undefined ? await verifyPairs(db, spec, spec.verify_jaccard, texts, threads) : 0;
  const found = await clusters(db);
  await keepSamples(db, docs, texts.at);
  const withJaccard = spec.verify_jaccard !== undefined;
  await db.run(
    `CREATE OR REPLACE TABLE near_duplicates AS
     SELECT d.source_idx, d.file_idx, d.row_idx, k.source_idx AS kept_source, k.file_idx AS kept_file, k.row_idx AS kept_row,
       ${withJaccard ? "j.jaccard" : "NULL::DOUBLE AS jaccard"}
     FROM near_removed_ords r JOIN ${docs} d ON d.ord = r.ord JOIN ${docs} k ON k.ord = r.kept_ord
     ${withJaccard ? "LEFT JOIN near_pair_jaccard j ON j.a = r.kept_ord AND j.b = r.ord" : ""}
     ORDER BY d.source_idx, d.file_idx, d.row_idx`,
  );
  for (const t of ["near_pairs", "near_pair_jaccard"]) await db.run(`DROP TABLE IF EXISTS ${t}`);
  return { removed: found.removed, clusters: found.clusters, candidatePairs: candidates, rejectedPairs: rejected };
}
