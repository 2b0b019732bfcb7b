/**
 * `build RECIPE --merge DIR... --merge-step STEP`: the merge of merge.ts as dependent jobs, so that its packing, which
 * reads and writes every token, runs on many machines, to the same bytes as the one-job merge and a single build.
 * The steps, their jobs and their order are merge-step-table.ts's; here is each one's work (RUNNERS):
 *   dedup --index h   the global dedup of hash range h (merge-dedup-step.ts)
 *   minhash --index b the MinHash buckets of band range b (merge-minhash-step.ts)
 *   plan              the global dedup and near-dedup, read from their steps where they ran and run here where not,
 *                     and the mixture over the partitions' keys; the stream's layout, cut into --pack-jobs M ranges
 *                     of whole shards
 *   scatter --index p partition p's picked documents, read once in chunk order, into one bin file per pack job
 *                     (pack-bins.ts)
 *   gather --index j  every partition's bin j, gathered in stream order into job j's shards and document indexes
 *                     (pack-stream.ts assembleRange, pack.ts writeShards)
 *   finish            the shards moved into place with the lock, manifest, MIXTURE.md and card
 * Every read and write stays sequential: each token goes once through its scatter's bin, and once more through a
 * gather's own bins only where the job's range is larger than pack's buffer. The steps share OUT/.work/merge
 * (merge-format.ts), which may sit on a filesystem every node mounts; a failed step reruns alone.
 */
import { createHash } from "node:crypto";
import { mkdir, readdir, rename, rm, stat } from "node:fs/promises";
import { endianness } from "node:os";
import { basename, join } from "node:path";
import { loadRecipe } from "../../recipe/load.ts";
import { DEFAULT_MAX_SHARD_BYTES, WORK_DIR } from "../../shards/layout.ts";
import type { Manifest } from "../../shards/manifest.ts";
import { writeJsonAtomic } from "../../util/atomic.ts";
import { sqlString } from "../../util/duckdb.ts";
import { RuntimeFailure, UsageError } from "../../util/errors.ts";
import { sha256File } from "../../util/hash.ts";
import { formatSize } from "../../util/size.ts";
import { closeDb, memoryBudget, openDb, packShare, type BuildOptions } from "../build.ts";
import { dedupResults, dedupStep } from "./merge-dedup-step.ts";
import { minhashResults, minhashStep } from "./merge-minhash-step.ts";
import { mergeStepSpec, type MergeStepSpec } from "./merge-step-table.ts";
import {
  GATHER_FORMAT,
  GATHER_JSON,
  gatherSchema,
  MAX_PACK_JOBS,
  MERGE_WORK,
  PLAN_FOLDER,
  PLAN_FORMAT,
  PLAN_JSON,
  PLAN_LAYOUT,
  PLAN_NAMES,
  PLAN_PICKS,
  planSchema,
  readRecord,
  SCATTER_FORMAT,
  SCATTER_JSON,
  scatterSchema,
  stepFolder,
  type GatherRecord,
  type MergePlan,
  type MergeStep,
} from "./merge-format.ts";
import { fileSize, inStepFolder, stepDb, type StepContext } from "./merge-step-folder.ts";
import { planMerge } from "./merge.ts";
import { partitionTokens, readPartitions } from "./partitions.ts";
import { takeOutputFolder } from "../output/output-folder.ts";
import { binSource, concatSources, scatterToBins } from "../stages/pack-bins.ts";
import { assembleRange, chunkSource, streamOptionsFor } from "../stages/pack-stream.ts";
import { longestPick, shardFileBytes, shardGeometry, shardSpan, writeShards, type PackResult } from "../stages/pack.ts";
import { PARTITION_TOKENIZER } from "./partition-format.ts";
import { runStage } from "../progress.ts";
import { layOutStream, picksByDoc, picksByDocQuery, writePlanNames, writtenBySource } from "../mixture/plan-tables.ts";
import { checkPackable, writeManifestFiles, type SelectedBuild } from "../output/write-build.ts";

const BYTE_ORDER = endianness();

export interface StepRequest {
  step: MergeStep;
  /** scatter: the partition; gather: the pack job */
  index?: number;
  /** plan: how many gather jobs pack the shards (default: one per partition) */
  packJobs?: number;
}

/** What a step did, for the CLI to say, with the commands of the steps it unblocks. */
export interface StepResult {
  step: MergeStep;
  summary: string;
  next: string[];
  manifest?: Manifest;
}

/** Each step's work; the table (merge-step-table.ts) says when it may run and what its --index is. */
const RUNNERS: Record<MergeStep, (ctx: StepContext, request: StepRequest) => Promise<StepResult>> = {
  dedup: async (ctx, r) => ({ step: "dedup", ...(await dedupStep(ctx, r.index!)) }),
  minhash: async (ctx, r) => ({ step: "minhash", ...(await minhashStep(ctx, r.index!)) }),
  plan: (ctx, r) => planStep(ctx, r.packJobs ?? ctx.parts.length),
  scatter: async (ctx, r) => scatterStep(ctx, await readPlan(ctx), r.index!),
  gather: async (ctx, r) => gatherStep(ctx, await readPlan(ctx), r.index!),
  finish: (ctx) => finishStep(ctx),
};

/** How many jobs a step runs in this merge. */
async function jobCount(ctx: StepContext, spec: MergeStepSpec): Promise<number> {
  if (spec.jobs === "one") return 1;
  if (spec.jobs === "per_partition") return ctx.parts.length;
  return (await readPlan(ctx)).plan.ranges.length;
}

/** A job's record, where a finished job leaves it. */
const recordPath = (ctx: StepContext, spec: MergeStepSpec, index: number) =>
  spec.jobs === "one" ? join(ctx.mergeDir, spec.name, spec.record!) : join(ctx.mergeDir, `${spec.name}-${index}`, spec.record!);

/** Refuses to start `step` before every job of the steps it runs after is done (optional ones check themselves). */
async function requireDone(ctx: StepContext, step: MergeStepSpec): Promise<void> {
  for (const name of step.after) {
    const before = mergeStepSpec(name as MergeStep);
    if (before.optional) continue;
    const count = await jobCount(ctx, before);
    const missing: number[] = [];
    for (let i = 0; i < count; i++) if ((await fileSize(recordPath(ctx, before, i))) < 0) missing.push(i);
    if (missing.length === 0) continue;
    const run = before.jobs === "one" ? ctx.command(before.name as MergeStep) : `${ctx.command(before.name as MergeStep, "N")} for each`;
    throw new UsageError(
      `--merge-step ${step.name} runs after ${before.name}, ${before.jobs === "one" ? "which is not done" : `whose job(s) ${missing.join(", ")} of ${count} are not done`}; run ${run} first`,
    );
  }
}

export async function runMergeStep(options: BuildOptions, dirs: string[], request: StepRequest): Promise<StepResult> {
  const loaded = await loadRecipe(options.recipePath);
  const parts = await readPartitions(dirs, loaded, options.recipePath);
  const ctx: StepContext = {
    options,
    loaded,
    parts,
    mergeDir: join(options.outDir, WORK_DIR, MERGE_WORK),
    command: (step, index) =>
      `chuxin-data build ${options.recipePath} --merge ${dirs.join(" ")} --out ${options.outDir} --merge-step ${step}${index !== undefined ? ` --index ${index}` : ""}`,
  };
  const spec = mergeStepSpec(request.step);
  await requireDone(ctx, spec);
  if (spec.index) {
    const count = await jobCount(ctx, spec);
    const index = request.index;
    if (index === undefined || !Number.isInteger(index) || index < 0 || index >= count) {
      throw new UsageError(`--merge-step ${spec.name} needs --index N, ${spec.index}, 0 to ${count - 1} (e.g. $SLURM_ARRAY_TASK_ID or $JOB_COMPLETION_INDEX)`);
    }
  }
  return RUNNERS[request.step](ctx, request);
}

type ReadPlan = Awaited<ReturnType<typeof readPlan>>;

async function planStep(ctx: StepContext, packJobs: number): Promise<StepResult> {
  const { options, loaded, parts } = ctx;
  if (!Number.isInteger(packJobs) || packJobs < 1 || packJobs > MAX_PACK_JOBS) throw new UsageError(`--pack-jobs ${packJobs}: expected a whole number from 1 to ${MAX_PACK_JOBS}`);
  const { recipe } = loaded;
  const maxShardBytes = options.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES;
  const lock = await takeOutputFolder(options.outDir, options.force, "chuxin-data build --merge --merge-step plan", { name: recipe.name, path: basename(loaded.path) });
  try {
    const dedups = await dedupResults(ctx);
    const buckets = await minhashResults(ctx);
    // A new plan voids every step after it of an older one; the steps it runs after come before it.
    const before = new RegExp(`^(${mergeStepSpec("plan").after.join("|")})-\\d+(\\.tmp)?$`);
    for (const name of await readdir(ctx.mergeDir).catch(() => [] as string[])) {
      if (!before.test(name) && name !== "locks") await rm(join(ctx.mergeDir, name), { recursive: true, force: true });
    }
    const db = await openDb(options);
    try {
      const selected = await planMerge(db, options, loaded, parts, dedups, buckets);
      // The bins (about the shards' size) stay until finish, beside the shards: the plan checks room for both.
      const tokens = selected.plans.reduce((a, p) => a + p.tokensSelected, 0);
      await checkPackable(tokens, recipe.sequence_length, maxShardBytes, options.outDir, 2, "the shards and, until finish, the scatters' bins");
      const plan = await runStage(options.sink, "pack", () =>
        inStepFolder(ctx, PLAN_FOLDER, "chuxin-data build --merge-step plan", async (tmp) => {
          const streamTokens = await layOutStream(db, selected.plans);
          await writePlanNames(db, selected.sources.map((s) => ({ name: s.spec.name, files: s.files.map((f) => f.path) })));
          const g = shardGeometry(streamTokens, recipe.sequence_length, maxShardBytes);
          const totalTokens = g.totalSequences * g.sequenceLength;
          const files = {} as MergePlan["files"];
          for (const [file, query] of [
            [PLAN_LAYOUT, `SELECT * FROM layout ORDER BY start`],
            [PLAN_PICKS, picksByDocQuery(totalTokens)],
            [PLAN_NAMES, `SELECT * FROM plan_names ORDER BY source_idx, file_idx`],
          ] as const) {
            const path = join(tmp, file);
            await db.run(`COPY (${query}) TO ${sqlString(path)} (FORMAT parquet, COMPRESSION zstd)`);
            files[file] = { sha256: await sha256File(path), bytes: (await stat(path)).size };
          }
          let first = 0;
          const { store: _store, ...json } = selected;
          const plan: MergePlan = {
            format: PLAN_FORMAT,
            recipe_sha256: loaded.sha256,
            partitions: parts.map((p) => ({ docs_sha256: p.record.docs_sha256, first_doc: (first += p.record.documents) - p.record.documents, documents: p.record.documents })),
            stream_tokens: streamTokens,
            total_tokens: totalTokens,
            geometry: g,
            max_shard_bytes: maxShardBytes,
            longest: await longestPick(db),
            eos_id: selected.tokenizer.eosId,
            bos_id: recipe.tokenizer.add_bos ? selected.tokenizer.bosId : null,
            // Whole shards to each job, as evenly as they divide; a job may get none.
            ranges: Array.from({ length: packJobs }, (_, j) => {
              const [a, b] = [Math.floor((j * g.shardCount) / packJobs), Math.floor(((j + 1) * g.shardCount) / packJobs)];
              return { first: a, end: b, ...shardSpan(g, a, b) };
            }),
            per_source: await writtenBySource(db, selected.plans.length, totalTokens),
            files,
            selected: { ...(json as unknown as MergePlan["selected"]), decontamination: (selected.decontamination ?? null) as MergePlan["selected"]["decontamination"] },
          };
          await writeJsonAtomic(join(tmp, PLAN_JSON), plan);
          return plan;
        }),
      );
      const shards = plan.geometry.shardCount;
      const idle = plan.ranges.filter((r) => r.end === r.first).length;
      const idleNote = idle > 0 ? ` (${idle} of them get no shard: lower --pack-jobs, or --max-shard-bytes for more, smaller shards)` : "";
      // A gather bins its range again unless it fits pack's buffer (pack-stream.ts streamOptionsFor: half of packShare).
      const widest = Math.max(...plan.ranges.map((r) => r.hi - r.lo));
      const fits = Math.max(64 * 2 ** 20, Math.ceil((4 * widest) / 0.05));
      return {
        step: "plan",
        summary:
          `merge plan: ${plan.total_tokens} tokens in ${shards} shard(s), packed by ${packJobs} job(s)${idleNote}; in ${join(ctx.mergeDir, PLAN_FOLDER)}. ` +
          (dedups ? `The global dedup came from the ${parts.length} dedup step(s). ` : `The global dedup ran in this job (no dedup steps ran). `) +
          `The widest job's range is ${formatSize(4 * widest)}: a gather with --memory ${formatSize(fits)} or more packs it without binning it again`,
        next: [`for each partition p in 0..${parts.length - 1}: ${ctx.command("scatter", "p")}`],
      };
    } finally {
      await closeDb(db);
    }
  } finally {
    await lock.release();
  }
}

/** The plan, checked against this recipe and these partitions; a usage error saying which step to run when it is not there. */
async function readPlan(ctx: StepContext): Promise<{ plan: MergePlan; sha256: string; dir: string }> {
  const dir = join(ctx.mergeDir, PLAN_FOLDER);
  const rerun = `rerun ${ctx.command("plan")}`;
  const read = await readRecord(join(dir, PLAN_JSON), planSchema, rerun);
  if (!read) throw new UsageError(`${ctx.options.outDir} has no merge plan (${join(dir, PLAN_JSON)}); run ${ctx.command("plan")} first`);
  const plan = read.value;
  if (plan.recipe_sha256 !== ctx.loaded.sha256) throw new UsageError(`the merge plan in ${dir} is of another recipe (sha256 ${plan.recipe_sha256}); ${rerun}`);
  if (plan.partitions.length !== ctx.parts.length) {
    throw new UsageError(`the merge plan in ${dir} was made from ${plan.partitions.length} partitions and --merge names ${ctx.parts.length}; ${rerun}, then every step after it`);
  }
  const changed = ctx.parts.findIndex((p, i) => plan.partitions[i]!.docs_sha256 !== p.record.docs_sha256);
  if (changed >= 0) {
    throw new UsageError(`partition ${changed} (${ctx.parts[changed]!.dir}) is not the one the merge plan in ${dir} was made from (it was rebuilt); ${rerun}, then every step after it`);
  }
  for (const [file, want] of Object.entries(plan.files)) {
    const got = await fileSize(join(dir, file));
    if (got !== want.bytes) throw new RuntimeFailure(`${join(dir, file)} is ${got < 0 ? "missing" : `${got} bytes, not the ${want.bytes} the plan wrote`}; ${rerun}`);
  }
  return { plan, sha256: createHash("sha256").update(read.text).digest("hex"), dir };
}

async function scatterStep(ctx: StepContext, { plan, sha256, dir }: ReadPlan, p: number): Promise<StepResult> {
  const part = plan.partitions[p]!;
  const folder = `scatter-${p}`;
  const bins = await runStage(ctx.options.sink, "pack", () =>
    inStepFolder(ctx, folder, `chuxin-data build --merge-step scatter --index ${p}`, async (tmp) => {
      const store = partitionTokens(ctx.parts[p]!);
      const db = await stepDb(ctx.options, tmp);
      try {
        // This partition's picks, by its own read positions (its chunks are read from position 0). picks.parquet is
        // sorted, and picksByDoc orders each block it reads.
        await db.run(
          `CREATE TEMP TABLE picks_by_doc AS SELECT read_pos - ${part.first_doc} AS read_pos, start, length
           FROM read_parquet(${sqlString(join(dir, PLAN_PICKS))}) WHERE read_pos >= ${part.first_doc} AND read_pos < ${part.first_doc + part.documents}`,
        );
        const layout = picksByDoc(db, plan.total_tokens, plan.bos_id ?? undefined, plan.eos_id);
        const files = plan.ranges.map((_, j) => join(tmp, `bin-${j}`));
        const edges = [...plan.ranges.map((r) => r.lo), plan.total_tokens];
        await scatterToBins(chunkSource(store, layout), edges, files, packShare(memoryBudget(ctx.options).bytes));
        const sizes = await Promise.all(files.map(async (f) => (await stat(f)).size));
        await rm(join(tmp, "duckdb-tmp"), { recursive: true, force: true });
        await writeJsonAtomic(join(tmp, SCATTER_JSON), { format: SCATTER_FORMAT, plan_sha256: sha256, partition: p, byte_order: BYTE_ORDER, bins: sizes });
        return sizes;
      } finally {
        db.close();
      }
    }),
  );
  const bytes = bins.reduce((a, b) => a + b, 0);
  return {
    step: "scatter",
    summary: `scatter ${p}: partition ${p}'s picks into ${bins.length} bin(s), ${bytes} bytes, in ${join(ctx.mergeDir, folder)}`,
    next: [`once every partition is scattered, for each pack job j in 0..${plan.ranges.length - 1}: ${ctx.command("gather", "j")}`],
  };
}

/** Checks every scatter finished under this plan; a usage error listing those to (re)run. */
async function scatteredBins(ctx: StepContext, sha256: string, job: number): Promise<string[]> {
  const missing: number[] = [];
  const files: string[] = [];
  for (let p = 0; p < ctx.parts.length; p++) {
    const folder = stepFolder(ctx.mergeDir, "scatter", p);
    const read = await readRecord(join(folder, SCATTER_JSON), scatterSchema, `rerun ${ctx.command("scatter", p)}`);
    if (!read || read.value.plan_sha256 !== sha256) {
      missing.push(p);
      continue;
    }
    if (read.value.byte_order !== BYTE_ORDER) throw new RuntimeFailure(`${folder} was scattered on a ${read.value.byte_order} machine and this one is ${BYTE_ORDER}; gather on a machine like the one that scattered`);
    const file = join(folder, `bin-${job}`);
    const size = await fileSize(file);
    if (size !== read.value.bins[job]) throw new RuntimeFailure(`${file} holds ${size < 0 ? "nothing (it is missing)" : `${size} bytes`}, its scatter wrote ${read.value.bins[job]}; rerun ${ctx.command("scatter", p)}`);
    files.push(file);
  }
  if (missing.length > 0) {
    throw new UsageError(`pack job ${job} needs every partition scattered under the current plan; not yet: ${missing.join(", ")}. Run ${ctx.command("scatter", "p")} for each`);
  }
  return files;
}

async function gatherStep(ctx: StepContext, { plan, sha256, dir }: ReadPlan, job: number): Promise<StepResult> {
  const range = plan.ranges[job]!;
  const bins = await scatteredBins(ctx, sha256, job);
  const folder = `gather-${job}`;
  const shards = await runStage(ctx.options.sink, "pack", () =>
    inStepFolder(ctx, folder, `chuxin-data build --merge-step gather --index ${job}`, async (tmp) => {
      const db = await stepDb(ctx.options, tmp);
      try {
        // The picks this job's document indexes name, and the names they write.
        await db.run(
          `CREATE TEMP TABLE layout AS SELECT * FROM read_parquet(${sqlString(join(dir, PLAN_LAYOUT))})
           WHERE start < ${range.hi} AND start + length > ${range.lo}`,
        );
        await db.run(`CREATE TEMP TABLE plan_names AS SELECT * FROM read_parquet(${sqlString(join(dir, PLAN_NAMES))})`);
        const stream = streamOptionsFor(packShare(memoryBudget(ctx.options).bytes), join(tmp, "bins"));
        const source = concatSources(bins.map(binSource));
        const written = await writeShards(db, plan.geometry, range, plan.longest, tmp, (emit) => assembleRange(source, range.lo, range.hi, stream, emit), ctx.options.sink);
        await rm(join(tmp, "duckdb-tmp"), { recursive: true, force: true });
        const record: GatherRecord = { format: GATHER_FORMAT, plan_sha256: sha256, job, shards: written };
        await writeJsonAtomic(join(tmp, GATHER_JSON), record);
        return written;
      } finally {
        db.close();
      }
    }),
  );
  return {
    step: "gather",
    summary: `pack job ${job}: ${shards.length} shard(s) (${range.first}..${range.end - 1}) in ${join(ctx.mergeDir, folder)}`,
    next: [`once every pack job is done: ${ctx.command("finish")}`],
  };
}

async function finishStep(ctx: StepContext): Promise<StepResult> {
  const { options, loaded } = ctx;
  const lock = await takeOutputFolder(options.outDir, options.force, "chuxin-data build --merge --merge-step finish", { name: loaded.recipe.name, path: basename(loaded.path) });
  try {
    const { plan, sha256 } = await readPlan(ctx);
    const staging = join(ctx.mergeDir, "staging");
    await mkdir(staging, { recursive: true });
    // A finish stopped part-way has moved some shards into staging already: they count where they are.
    const jobs: GatherRecord[] = [];
    const missing: number[] = [];
    for (let j = 0; j < plan.ranges.length; j++) {
      const read = await readRecord(join(stepFolder(ctx.mergeDir, "gather", j), GATHER_JSON), gatherSchema, `rerun ${ctx.command("gather", j)}`);
      if (!read || read.value.plan_sha256 !== sha256 || read.value.job !== j) missing.push(j);
      else jobs.push(read.value);
    }
    if (missing.length > 0) throw new UsageError(`the merge is missing pack job(s) ${missing.join(", ")} of the current plan; run ${ctx.command("gather", "j")} for each, then finish again`);
    const L = plan.geometry.sequenceLength;
    for (const [j, job] of jobs.entries()) {
      const from = stepFolder(ctx.mergeDir, "gather", j);
      for (const s of job.shards) {
        for (const [name, bytes] of [[s.path, shardFileBytes(s.sequences, L)], [s.doc_index, undefined]] as const) {
          const there = join(staging, name);
          const have = await fileSize(there);
          if (have >= 0 && (bytes === undefined || have === bytes)) continue;
          const size = await fileSize(join(from, name));
          if (size < 0 || (bytes !== undefined && size !== bytes)) throw new RuntimeFailure(`${join(from, name)} is ${size < 0 ? "missing" : `${size} bytes, not ${bytes}`}; rerun ${ctx.command("gather", j)}, then finish again`);
          await rename(join(from, name), there);
        }
      }
    }
    const selected = plan.selected as unknown as Omit<SelectedBuild, "store">;
    const packed: PackResult = {
      shards: jobs.flatMap((j) => j.shards),
      totalSequences: plan.geometry.totalSequences,
      totalTokens: plan.total_tokens,
      tailTokensDropped: plan.stream_tokens - plan.total_tokens,
      perSource: plan.per_source,
    };
    // The tokenizer from this machine's view of partition 0, not the path the plan's machine saw.
    const tokenizerFile = join(ctx.parts[0]!.dir, PARTITION_TOKENIZER);
    const manifest = await writeManifestFiles(loaded, { ...selected, tokenizerFile, decontamination: selected.decontamination ?? undefined }, packed, { outDir: options.outDir, staging, recipeFile: basename(loaded.path) }, options.sink);
    // The build is in place: the plan, the bins and the emptied job folders go.
    await rm(ctx.mergeDir, { recursive: true, force: true });
    return { step: "finish", summary: `merged ${plan.ranges.length} pack job(s) into ${options.outDir}`, next: [], manifest };
  } finally {
    await lock.release();
  }
}
