/**
 * `build --merge DIR... --merge-step dedup --index h`: the global dedup of hash range h of N, N the partitions' count,
 * so that each partition's job owns 1/N of the hashes (merge-dedup.ts). The plan then reads every range's survivors
 * instead of ranking every key on one machine. Job h also checks partition h's key files against their sha256: N jobs
 * check the N partitions once, where each hashing every partition's keys would read them N times.
 */
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { writeJsonAtomic } from "../../util/atomic.ts";
import { sqlString } from "../../util/duckdb.ts";
import { RuntimeFailure } from "../../util/errors.ts";
import { sha256File } from "../../util/hash.ts";
import { checkPartitionKeys, dedupRange, hashRange, type DedupDone } from "./merge-dedup.ts";
import { DEDUP_FORMAT, DEDUP_JSON, DEDUP_KEPT, dedupSchema, readRecord, stepFolder, type DedupRecord } from "./merge-format.ts";
import { fileSize, inStepFolder, requireEveryRange, stepDb, type StepContext } from "./merge-step-folder.ts";
import type { Partition } from "./partitions.ts";
import { PARTITION_DOCS, PARTITION_DUPLICATES } from "./partition-format.ts";
import { runStage } from "../progress.ts";

/** Each partition as a dedup job reads it: its record's key hash, and its key files' sizes. */
function partitionsSeen(parts: Partition[]): Promise<DedupRecord["partitions"]> {
  return Promise.all(
    parts.map(async (p) => ({ docs_sha256: p.record.docs_sha256, docs_bytes: await fileSize(join(p.dir, PARTITION_DOCS)), duplicates_bytes: await fileSize(join(p.dir, PARTITION_DUPLICATES)) })),
  );
}

export async function dedupStep(ctx: StepContext, h: number): Promise<{ summary: string; next: string[] }> {
  const { parts, loaded } = ctx;
  const range = hashRange(h, parts.length);
  const folder = `dedup-${h}`;
  const record = await runStage(ctx.options.sink, "dedup", () =>
    inStepFolder(ctx, folder, `chuxin-data build --merge-step dedup --index ${h}`, async (tmp) => {
      await checkPartitionKeys([parts[h]!]);
      const seen = await partitionsSeen(parts);
      const db = await stepDb(ctx.options, tmp, "reading");
      try {
        const counts = await dedupRange(db, parts, loaded.recipe.dedup.enabled, range, loaded.recipe.sources.length);
        const path = join(tmp, DEDUP_KEPT);
        await db.run(`COPY (SELECT * FROM kept ORDER BY p, lord) TO ${sqlString(path)} (FORMAT parquet, COMPRESSION zstd)`);
        const { n } = await db.one<{ n: bigint }>(`SELECT count(*) AS n FROM kept`);
        await rm(join(tmp, "duckdb-tmp"), { recursive: true, force: true });
        const rec: DedupRecord = {
          format: DEDUP_FORMAT,
          recipe_sha256: loaded.sha256,
          range,
          partitions: seen,
          kept: { sha256: await sha256File(path), bytes: await fileSize(path), documents: Number(n) },
          per_source: counts.perSource,
          local_duplicates: counts.local,
          cross_duplicates: counts.cross,
        };
        await writeJsonAtomic(join(tmp, DEDUP_JSON), rec);
        return rec;
      } finally {
        db.close();
      }
    }),
  );
  const hi = range.hi ?? "100000000";
  return {
    summary:
      `dedup ${h}: hashes ${range.lo}..${hi} of ${parts.length} range(s), ${record.kept.documents} documents kept, ` +
      `${record.cross_duplicates} removed as copies of another partition's, in ${join(ctx.mergeDir, folder)}`,
    next: [`once every range 0..${parts.length - 1} is deduplicated: ${ctx.command("plan")}`],
  };
}

/**
 * The dedup steps' results, for the plan: undefined where none ran (the plan dedups itself), or every range's, each
 * checked against this recipe and these partitions; a usage error naming the ranges to (re)run when some are missing
 * or stale.
 */
export async function dedupResults(ctx: StepContext): Promise<DedupDone | undefined> {
  const n = ctx.parts.length;
  const seen = await partitionsSeen(ctx.parts);
  const missing: number[] = [];
  const stale: number[] = [];
  const done: DedupDone = { counts: [], keptFiles: [] };
  for (let h = 0; h < n; h++) {
    const folder = stepFolder(ctx.mergeDir, "dedup", h);
    const read = await readRecord(join(folder, DEDUP_JSON), dedupSchema, `rerun ${ctx.command("dedup", h)}`);
    if (!read) {
      missing.push(h);
      continue;
    }
    const r = read.value;
    const want = hashRange(h, n);
    const sameRange = r.range.index === h && r.range.count === n && r.range.lo === want.lo && r.range.hi === want.hi;
    const sameParts =
      r.partitions.length === n &&
      r.partitions.every((q, i) => q.docs_sha256 === seen[i]!.docs_sha256 && q.docs_bytes === seen[i]!.docs_bytes && q.duplicates_bytes === seen[i]!.duplicates_bytes);
    if (r.recipe_sha256 !== ctx.loaded.sha256 || !sameRange || !sameParts) {
      stale.push(h);
      continue;
    }
    const kept = join(folder, DEDUP_KEPT);
    if ((await sha256File(kept).catch(() => "missing")) !== r.kept.sha256) throw new RuntimeFailure(`${kept} is not the file its dedup step wrote; rerun ${ctx.command("dedup", h)}`);
    done.counts.push({ perSource: r.per_source, local: r.local_duplicates, cross: r.cross_duplicates });
    done.keptFiles.push(kept);
  }
  if (missing.length === n) return undefined;
  requireEveryRange("dedup", missing, stale, ctx.command("dedup", "h"));
  return done;
}
