/**
 * A merge's near-dedup (dedup.minhash) over every partition's documents, to the bytes of a single build. Each
 * partition hashed its documents into band keys (minhash.parquet, sorted by band and key). The buckets with two or
 * more documents are found by band range: here whole, in the one-job merge or a plan with no minhash steps, or a
 * range a job (`--merge-step minhash --index b`, merge-minhash-step.ts). The plan then keeps the bucket members that
 * survive the global exact dedup, numbers them in recipe order as a single build numbers unique_docs, and clusters
 * them as a build does (stages/near-dedup-clusters.ts). verify_jaccard and the samples read the documents' text back
 * from the partitions' tokens: the tokenizer's byte-level decode gives the exact text it encoded.
 */
import { join } from "node:path";
import type { MinhashSpec } from "../../recipe/schema.ts";
import { loadTokenizer } from "../../tokenizer/load.ts";
import { type BuildDb, sqlString } from "../../util/duckdb.ts";
import { RuntimeFailure } from "../../util/errors.ts";
import { sha256File } from "../../util/hash.ts";
import { clusterNearDuplicates, type ClusterResult } from "../stages/near-dedup-clusters.ts";
import { CHUNK_DOCS } from "../stages/tokenize.ts";
import { partitionTokens, type Partition } from "./partitions.ts";
import { PARTITION_MINHASH, PARTITION_TOKENIZER } from "./partition-format.ts";

/** Band range `index` of `count` over `bands` bands: [lo, hi). */
export function bandRange(index: number, count: number, bands: number): { lo: number; hi: number } {
  return { lo: Math.floor((index * bands) / count), hi: Math.floor(((index + 1) * bands) / count) };
}

/** Checks each partition's minhash.parquet against its record (and that the partition wrote one). */
export async function checkPartitionMinhash(parts: Partition[], rerun: (p: Partition) => string): Promise<void> {
  for (const p of parts) {
    const want = p.record.minhash_sha256;
    if (!want) throw new RuntimeFailure(`${p.dir} has no MinHash band keys (it was built without dedup.minhash); rerun it: ${rerun(p)}`);
    const got = await sha256File(join(p.dir, PARTITION_MINHASH)).catch(() => "missing");
    if (got !== want) throw new RuntimeFailure(`${join(p.dir, PARTITION_MINHASH)} is ${got === "missing" ? "missing" : "not the file its partition wrote"}; rerun that partition: ${rerun(p)}`);
  }
}

/** TEMP TABLE `near_buckets (band, key, p, lord)`: every document of a bucket holding two or more, bands [lo, hi). */
export async function bucketMembers(db: BuildDb, parts: Partition[], lo: number, hi: number): Promise<void> {
  const union = parts.map((p, k) => `SELECT ${k} AS p, ord AS lord, band, key FROM read_parquet(${sqlString(join(p.dir, PARTITION_MINHASH))}) WHERE band >= ${lo} AND band < ${hi}`).join(" UNION ALL ");
  await db.run(
    `CREATE OR REPLACE TEMP TABLE near_buckets AS
     SELECT band, key, p, lord FROM (SELECT *, count(*) OVER (PARTITION BY band, key) AS n FROM (${union})) WHERE n > 1`,
  );
}

/** Each document's text, decoded from its partition's tokens, by ord in `near_docs`. */
function textsFromTokens(db: BuildDb, parts: Partition[]) {
  const stores = new Map<number, ReturnType<typeof partitionTokens>>();
  const tokenizers = new Map<number, Promise<Awaited<ReturnType<typeof loadTokenizer>>>>();
  return async (ords: number[]): Promise<string[]> => {
    if (ords.length === 0) return [];
    const where = await db.rows<{ ord: bigint; p: number; lord: bigint }>(`SELECT ord, p, lord FROM near_docs WHERE ord IN (${[...new Set(ords)].join(",")})`);
    const at = new Map(where.map((w) => [Number(w.ord), { p: w.p, lord: Number(w.lord) }]));
    const out: string[] = [];
    for (const o of ords) {
      const { p, lord } = at.get(o)!;
      if (!stores.has(p)) stores.set(p, partitionTokens(parts[p]!));
      if (!tokenizers.has(p)) tokenizers.set(p, loadTokenizer(join(parts[p]!.dir, PARTITION_TOKENIZER)));
      const chunk = stores.get(p)!.readChunk(Math.floor(lord / CHUNK_DOCS));
      let start = 0;
      const i = lord % CHUNK_DOCS;
      for (let k = 0; k < i; k++) start += chunk.lengths[k]!;
      out.push((await tokenizers.get(p)!).decode(Array.from(chunk.ids.subarray(start, start + chunk.lengths[i]!))));
    }
    return out;
  };
}

/**
 * Removes near-duplicates from `kept` (the global dedup's survivors; a TEMP TABLE), from `near_buckets` or the
 * minhash steps' bucket files; leaves `near_duplicates` and `near_duplicate_samples` as a build does.
 */
export async function nearDedupMerged(db: BuildDb, parts: Partition[], spec: MinhashSpec, bucketFiles: string[] | undefined, threads: number): Promise<ClusterResult> {
  if (bucketFiles) await db.run(`CREATE OR REPLACE TEMP VIEW near_buckets AS SELECT * FROM read_parquet([${bucketFiles.map(sqlString).join(", ")}])`);
  else await bucketMembers(db, parts, 0, spec.bands);
  await db.run(
    `CREATE OR REPLACE TEMP TABLE near_docs AS
     SELECT row_number() OVER (ORDER BY source_idx, file_idx, row_idx) - 1 AS ord, p, lord, source_idx, file_idx, row_idx FROM kept`,
  );
  await db.run(`CREATE OR REPLACE TABLE minhash_bands AS SELECT n.ord, b.band, b.key FROM near_buckets b JOIN near_docs n USING (p, lord)`);
  await db.run(bucketFiles ? `DROP VIEW near_buckets` : `DROP TABLE near_buckets`);
  const found = await clusterNearDuplicates(db, spec, (band) => `SELECT ord, key FROM minhash_bands WHERE band = ${band}`, "near_docs", { at: textsFromTokens(db, parts) }, threads);
  await db.run(`DROP TABLE minhash_bands`);
  await db.run(`DELETE FROM kept USING (SELECT n.p, n.lord FROM near_removed_ords r JOIN near_docs n USING (ord)) x WHERE kept.p = x.p AND kept.lord = x.lord`);
  await db.run(`DROP TABLE near_removed_ords`);
  await db.run(`DROP TABLE near_docs`);
  return found;
}
