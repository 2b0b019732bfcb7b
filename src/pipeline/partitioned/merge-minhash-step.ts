/**
 * `build --merge DIR... --merge-step minhash --index b`: the MinHash buckets of band range b of N, N the partitions'
 * count (merge-near-dedup.ts bucketMembers): each job reads only its bands' row groups of every partition's
 * minhash.parquet and keeps the buckets with two or more documents. The plan then clusters the survivors of the
 * global dedup from every range's buckets, instead of bucketing every band on one machine. Job b also checks
 * partition b's minhash.parquet against its sha256. Without dedup.minhash in the recipe a job has nothing to do and
 * says so, so a fixed chain of jobs (cluster/) runs for any recipe.
 */
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { minhashSpec } from "../../recipe/schema.ts";
import { writeJsonAtomic } from "../../util/atomic.ts";
import { sqlString } from "../../util/duckdb.ts";
import { RuntimeFailure } from "../../util/errors.ts";
import { sha256File } from "../../util/hash.ts";
import { runStage } from "../progress.ts";
import { bandRange, bucketMembers, checkPartitionMinhash } from "./merge-near-dedup.ts";
import { MINHASH_BUCKETS, MINHASH_FORMAT, MINHASH_JSON, minhashSchema, readRecord, stepFolder, type MinhashRecord } from "./merge-format.ts";
import { fileSize, inStepFolder, requireEveryRange, stepDb, type StepContext } from "./merge-step-folder.ts";

export async function minhashStep(ctx: StepContext, b: number): Promise<{ summary: string; next: string[] }> {
  const { parts, loaded } = ctx;
  const spec = minhashSpec(loaded.recipe.dedup.minhash);
  const range = { index: b, count: parts.length, ...bandRange(b, parts.length, spec?.bands ?? 0) };
  const folder = `minhash-${b}`;
  const record = await runStage(ctx.options.sink, "near-dedup", () =>
    inStepFolder(ctx, folder, `chuxin-data build --merge-step minhash --index ${b}`, async (tmp) => {
      const rec: MinhashRecord = { format: MINHASH_FORMAT, recipe_sha256: loaded.sha256, range, partitions: parts.map((p) => ({ minhash_sha256: p.record.minhash_sha256 ?? null })), buckets: null };
      if (spec) {
        await checkPartitionMinhash([parts[b]!], (p) => p.rerun);
        const db = await stepDb(ctx.options, tmp, "reading");
        try {
          await bucketMembers(db, parts, range.lo, range.hi);
          const path = join(tmp, MINHASH_BUCKETS);
          await db.run(`COPY (SELECT * FROM near_buckets ORDER BY band, key, p, lord) TO ${sqlString(path)} (FORMAT parquet, COMPRESSION zstd)`);
          const { n } = await db.one<{ n: bigint }>(`SELECT count(*) AS n FROM near_buckets`);
          await rm(join(tmp, "duckdb-tmp"), { recursive: true, force: true });
          rec.buckets = { sha256: await sha256File(path), bytes: await fileSize(path), rows: Number(n) };
        } finally {
          db.close();
        }
      }
      await writeJsonAtomic(join(tmp, MINHASH_JSON), rec);
      return rec;
    }),
  );
  return {
    summary:
      spec && range.lo === range.hi
        ? `minhash ${b}: no bands in this range (${spec.bands} bands over ${parts.length} jobs)`
        : record.buckets
      ? `minhash ${b}: bands ${range.lo}..${range.hi - 1} of ${spec!.bands}, ${record.buckets.rows} documents in buckets of two or more, in ${join(ctx.mergeDir, folder)}`
      : `minhash ${b}: the recipe has no dedup.minhash; nothing to do`,
    next: [`once every range 0..${parts.length - 1} is done (and the dedup steps, if they run): ${ctx.command("plan")}`],
  };
}

/**
 * The minhash steps' bucket files, for the plan: undefined where the recipe has no dedup.minhash or no step ran
 * (the plan buckets every band itself), else every range's, each checked against this recipe and these partitions.
 */
export async function minhashResults(ctx: StepContext): Promise<string[] | undefined> {
  if (!minhashSpec(ctx.loaded.recipe.dedup.minhash)) return undefined;
  const n = ctx.parts.length;
  const missing: number[] = [];
  const stale: number[] = [];
  const files: string[] = [];
  for (let b = 0; b < n; b++) {
    const folder = stepFolder(ctx.mergeDir, "minhash", b);
    const read = await readRecord(join(folder, MINHASH_JSON), minhashSchema, `rerun ${ctx.command("minhash", b)}`);
    if (!read) {
      missing.push(b);
      continue;
    }
    const r = read.value;
    const sameParts = r.partitions.length === n && r.partitions.every((q, i) => q.minhash_sha256 === (ctx.parts[i]!.record.minhash_sha256 ?? null));
    if (r.recipe_sha256 !== ctx.loaded.sha256 || r.range.index !== b || r.range.count !== n || !sameParts || !r.buckets) {
      stale.push(b);
      continue;
    }
    const path = join(folder, MINHASH_BUCKETS);
    if ((await sha256File(path).catch(() => "missing")) !== r.buckets.sha256) throw new RuntimeFailure(`${path} is not the file its minhash step wrote; rerun ${ctx.command("minhash", b)}`);
    files.push(path);
  }
  if (missing.length === n) return undefined;
  requireEveryRange("minhash", missing, stale, ctx.command("minhash", "b"));
  return files;
}
