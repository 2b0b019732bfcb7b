/**
 * What a merge run as steps on many machines (merge-steps.ts) leaves in OUT/.work/merge, each folder written under a
 * temp name and renamed when whole, with its record written last:
 *   dedup-<h>/    dedup.json, kept.parquet: hash range h's documents that survive the global dedup (merge-dedup.ts),
 *                 one range per partition; written before the plan, which reads them when all are there
 *   minhash-<b>/  minhash.json, buckets.parquet: band range b's buckets of two or more documents (merge-near-dedup.ts),
 *                 with dedup.minhash; likewise before the plan
 *   plan/         plan.json (the selected build, the stream's geometry and the pack jobs' shard ranges),
 *                 layout.parquet (the plan's `layout`: every pick, by start, for the document indexes),
 *                 picks.parquet (the written picks by document: each scatter reads its partition's row groups),
 *                 names.parquet (`plan_names`)
 *   scatter-<p>/  scatter.json, bin-<j> for each pack job j: partition p's picks that fall in job j's stream range
 *   gather-<j>/   gather.json, and pack job j's shards and document indexes, named as in the build
 *   staging/      the finished build before it moves into OUT (finish)
 *   locks/<step>/ one runner per step at a time
 * Every step's record names the plan's sha256, so nothing from an older plan is ever combined with a newer one.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { UsageError } from "../../util/errors.ts";

export const MERGE_WORK = "merge";
export const PLAN_FOLDER = "plan";
export const PLAN_JSON = "plan.json";
export const PLAN_LAYOUT = "layout.parquet";
export const PLAN_NAMES = "names.parquet";
export const PLAN_PICKS = "picks.parquet";
export const DEDUP_JSON = "dedup.json";
export const DEDUP_KEPT = "kept.parquet";
export const SCATTER_JSON = "scatter.json";
export const GATHER_JSON = "gather.json";
export const DEDUP_FORMAT = "chuxin-data-merge-dedup/1";
export const MINHASH_JSON = "minhash.json";
export const MINHASH_BUCKETS = "buckets.parquet";
export const MINHASH_FORMAT = "chuxin-data-merge-minhash/1";
export const PLAN_FORMAT = "chuxin-data-merge-plan/1";
export const SCATTER_FORMAT = "chuxin-data-merge-scatter/1";
export const GATHER_FORMAT = "chuxin-data-merge-gather/1";
/** More pack jobs than this would give each scatter too many bin files open at once. */
export const MAX_PACK_JOBS = 1000;

export { MERGE_STEPS, type MergeStep } from "./merge-step-table.ts";

const hex = (n: number) => z.string().regex(new RegExp(`^[0-9a-f]{${n}}$`));
const count = z.number().int().nonnegative();

// The names finish moves into the output folder: only a shard's and its index's, never a path.
const shardRecord = z.object({
  path: z.string().regex(/^shard-\d+\.npy$/),
  doc_index: z.string().regex(/^shard-\d+\.docs\.parquet$/),
  sha256: hex(64),
  doc_index_sha256: hex(64),
  sequences: count,
});

export const planSchema = z.object({
  format: z.literal(PLAN_FORMAT),
  recipe_sha256: hex(64),
  partitions: z.array(z.object({ docs_sha256: hex(64), first_doc: count, documents: count })),
  stream_tokens: count,
  total_tokens: count,
  geometry: z.object({ sequenceLength: count, perShard: count, totalSequences: count, shardCount: count }),
  max_shard_bytes: count,
  longest: count,
  eos_id: count,
  bos_id: count.nullable(),
  /** pack job j writes shards [first, end) of the stream range [lo, hi) */
  ranges: z.array(z.object({ first: count, end: count, lo: count, hi: count })),
  per_source: z.array(z.object({ tokensWritten: count, documentsWritten: count, tailTokensDropped: count })),
  /** sha256 and size of each of the plan's parquet files (the steps check sizes: hashing a large layout in every job costs too much) */
  files: z.record(z.enum([PLAN_LAYOUT, PLAN_PICKS, PLAN_NAMES]), z.object({ sha256: hex(64), bytes: count })),
  /** SelectedBuild without its token store: JSON the manifest is written from */
  selected: z.object({
    lock: z.record(z.string(), z.unknown()),
    tokenizer: z.record(z.string(), z.unknown()),
    sources: z.array(z.record(z.string(), z.unknown())),
    stats: z.array(z.record(z.string(), z.unknown())),
    plans: z.array(z.record(z.string(), z.unknown())),
    decontamination: z.record(z.string(), z.unknown()).nullable(),
    nearDuplicates: z.record(z.string(), z.unknown()).optional(),
  }),
});
export type MergePlan = z.infer<typeof planSchema>;

export const dedupSchema = z.object({
  format: z.literal(DEDUP_FORMAT),
  recipe_sha256: hex(64),
  range: z.object({ index: count, count: count, lo: hex(8), hi: hex(8).nullable() }),
  /** what each partition was when the job read it: the plan checks the partitions are still those */
  partitions: z.array(z.object({ docs_sha256: hex(64), docs_bytes: count, duplicates_bytes: count })),
  kept: z.object({ sha256: hex(64), bytes: count, documents: count }),
  /** merge-dedup.ts RangeCounts */
  per_source: z.array(z.object({ within: count, across: count })),
  local_duplicates: count,
  cross_duplicates: count,
});
export type DedupRecord = z.infer<typeof dedupSchema>;

export const minhashSchema = z.object({
  format: z.literal(MINHASH_FORMAT),
  recipe_sha256: hex(64),
  /** bands [lo, hi) of range index of count */
  range: z.object({ index: count, count: count, lo: count, hi: count }),
  /** each partition's minhash.parquet as the job read it */
  partitions: z.array(z.object({ minhash_sha256: hex(64).nullable() })),
  /** null where the recipe has no dedup.minhash (the job had nothing to do) */
  buckets: z.object({ sha256: hex(64), bytes: count, rows: count }).nullable(),
});
export type MinhashRecord = z.infer<typeof minhashSchema>;

export const scatterSchema = z.object({
  format: z.literal(SCATTER_FORMAT),
  plan_sha256: hex(64),
  partition: count,
  byte_order: z.enum(["LE", "BE"]),
  /** bytes of bin-<j>, for each pack job j */
  bins: z.array(count),
});
export type ScatterRecord = z.infer<typeof scatterSchema>;

export const gatherSchema = z.object({
  format: z.literal(GATHER_FORMAT),
  plan_sha256: hex(64),
  job: count,
  shards: z.array(shardRecord),
});
export type GatherRecord = z.infer<typeof gatherSchema>;

/** A step's record, or undefined where the step has not finished; a usage error naming the file when it is not one. */
export async function readRecord<T>(path: string, schema: z.ZodType<T>, rerun: string): Promise<{ value: T; text: string } | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch {
    return undefined;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`${path}: not valid JSON (${(error as Error).message}); ${rerun}`);
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const problems = parsed.error.issues.slice(0, 3).map((i) => `${i.path.join(".")}: ${i.message}`);
    throw new UsageError(`${path}: not the record this version of chuxin-data writes (${problems.join("; ")}); ${rerun}`);
  }
  return { value: parsed.data, text };
}

export const stepFolder = (mergeDir: string, step: "dedup" | "minhash" | "scatter" | "gather", index: number) => join(mergeDir, `${step}-${index}`);
