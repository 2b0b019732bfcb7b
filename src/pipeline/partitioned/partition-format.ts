/**
 * What one partition of a build leaves in its folder for `build --merge` (see partition.ts and merge.ts):
 *   partition.json      this file's record: which slice, of which recipe and inputs, its counts, the sha256 of every
 *                       file it names, and record_sha256 over all of that (an edited or damaged record is refused);
 *                       written last
 *   docs.parquet        (ord, source_idx, file_idx, row_idx, doc_hash, tokens): the slice's documents left after its
 *                       own dedup, in recipe order, with their token counts (no specials)
 *   duplicates.parquet  (source_idx, doc_hash): the rows its own dedup removed
 *   tokens/*.tok        the token chunks of docs.parquet's documents, in order (tokenize.ts's format)
 *   tokenizer.json      the tokenizer they were tokenised with (its sha256 is the lock's), for the merged build's copy
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { RuntimeFailure, UsageError } from "../../util/errors.ts";
import { canonicalJson, sha256Hex } from "../../util/hash.ts";

export const PARTITION_JSON = "partition.json";
export const PARTITION_DOCS = "docs.parquet";
export const PARTITION_DUPLICATES = "duplicates.parquet";
export const PARTITION_TOKENS = "tokens";
export const PARTITION_TOKENIZER = "tokenizer.json";
/** With dedup.minhash: each document's MinHash band keys (ord, band, key), sorted by band and key, for the merge. */
export const PARTITION_MINHASH = "minhash.parquet";
export const PARTITION_FILES = [PARTITION_JSON, PARTITION_DOCS, PARTITION_DUPLICATES, PARTITION_TOKENS, PARTITION_TOKENIZER, PARTITION_MINHASH];
export const PARTITION_FORMAT = "chuxin-data-partition/2";

export interface PartitionSlice {
  index: number;
  count: number;
}

/** "2/8" as { index: 2, count: 8 }; a usage error naming the flag otherwise. */
export function parsePartition(value: string): PartitionSlice {
  const m = /^(\d+)\/(\d+)$/.exec(value.trim());
  const index = m ? Number(m[1]) : NaN;
  const count = m ? Number(m[2]) : NaN;
  if (!m || count < 1 || index >= count || count > 100_000) {
    throw new UsageError(`--partition ${value}: expected i/N with 0 <= i < N (e.g. 0/8; Slurm: $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT with --array=0-7)`);
  }
  return { index, count };
}

/**
 * Whether a partition reads the g-th input file (the recipe's sources in order, each source's files in lock order).
 * Files are dealt round-robin, so every partition gets a share of every source; a file is read whole by one partition.
 */
export function ownsFile(slice: PartitionSlice, globalFile: number): boolean {
  return globalFile % slice.count === slice.index;
}

const hex = (n: number) => z.string().regex(new RegExp(`^[0-9a-f]{${n}}$`));
const count = z.number().int().nonnegative();

export const partitionSchema = z.object({
  format: z.literal(PARTITION_FORMAT),
  partition: z.object({ index: count, count: z.number().int().positive() }),
  recipe: z.object({ path: z.string(), sha256: hex(64) }),
  tokenizer: z.object({
    lock: z.record(z.string(), z.unknown()),
    eos_id: count,
    bos_id: count,
    vocab_size: count,
    impl: z.string(),
  }),
  sources: z.array(
    z.object({
      name: z.string(),
      hf: z.object({ repo: z.string(), revision: z.string(), commit: hex(40) }).nullable(),
      /** Every file of the source; sha256 and rows only where this partition read the file. */
      files: z.array(z.object({ path: z.string(), size: count, sha256: hex(64).nullable(), rows: count.nullable() })),
      documents_read: count,
      skipped: z.record(z.string(), count),
      /** the first skipped rows of each reason in this partition's files: [file index in the source, row] */
      skipped_rows: z.record(z.string(), z.array(z.tuple([count, count]))),
    }),
  ),
  decontamination: z.object({ report: z.record(z.string(), z.unknown()), lock: z.array(z.unknown()) }).nullable(),
  documents: count,
  duplicates: count,
  tokens: count,
  /** `file` is named by its texts; `sha256` is of its payload (lengths and ids, as its header holds it), checked as a merge reads it */
  chunks: z.array(z.object({ file: z.string().regex(/^[0-9a-f]{64}\.tok$/), sha256: hex(64), documents: count, ids: count })),
  docs_sha256: hex(64),
  duplicates_sha256: hex(64),
  /** with dedup.minhash: minhash.parquet's sha256 */
  minhash_sha256: hex(64).optional(),
  /** sha256 of the rest of the record (canonicalJson), so the counts a merge adds up are the ones the partition wrote */
  record_sha256: hex(64),
});

export type PartitionRecord = z.infer<typeof partitionSchema>;

function recordDigest(record: Omit<PartitionRecord, "record_sha256">): string {
  const { record_sha256: _seal, ...rest } = record as PartitionRecord;
  return sha256Hex(canonicalJson(rest));
}

/** The record with its record_sha256. It guards against edits and damage, not a forger who recomputes it. */
export function sealPartition(record: Omit<PartitionRecord, "record_sha256">): PartitionRecord {
  return { ...record, record_sha256: recordDigest(record) };
}

/** A finished partition's record; a usage error saying how to finish it when the folder holds none. */
export async function readPartition(dir: string, recipePath: string): Promise<PartitionRecord> {
  const path = join(dir, PARTITION_JSON);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch {
    throw new UsageError(
      `${dir}: no ${PARTITION_JSON}, so this is not a finished partition (it may still be running, or have been stopped); ` +
        `run or rerun \`chuxin-data build ${recipePath} --partition i/N --out ${dir}\` for it, then merge again`,
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`${path}: not valid JSON (${(error as Error).message}); rerun that partition`);
  }
  const parsed = partitionSchema.safeParse(value);
  if (!parsed.success) {
    const problems = parsed.error.issues.slice(0, 3).map((i) => `${i.path.join(".")}: ${i.message}`);
    throw new UsageError(`${path}: not a ${PARTITION_FORMAT} record (${problems.join("; ")}); rerun that partition with this version of chuxin-data`);
  }
  if (recordDigest(parsed.data) !== parsed.data.record_sha256) {
    const slice = `${parsed.data.partition.index}/${parsed.data.partition.count}`;
    throw new RuntimeFailure(
      `${path}: changed since the partition wrote it (its contents no longer match its record_sha256), so its counts cannot be trusted; ` +
        `rerun that partition: chuxin-data build ${recipePath} --partition ${slice} --out ${dir}`,
    );
  }
  return parsed.data;
}
