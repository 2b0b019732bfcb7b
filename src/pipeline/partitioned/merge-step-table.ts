/**
 * The merge's steps, declared once (as datatrove declares a pipeline's steps): each one's name, what it reads and
 * writes, how many jobs it runs, what `--index` means for it, and the steps whose every job must be done first. The
 * CLI's choices and checks, the order runMergeStep enforces, the Slurm chain (cluster/slurm/) and the Kubernetes
 * Jobs (cluster/kubernetes/merge-steps.yaml) all come from this table (cluster-scripts.ts writes the files; a test
 * fails while the checked-in ones differ). A new step is one entry here and one function in merge-steps.ts.
 */

/** How many jobs a step runs: one, one per partition, or one per pack job (the plan's --pack-jobs). */
export type JobCount = "one" | "per_partition" | "per_pack_job";

export interface MergeStepSpec {
  readonly name: string;
  readonly jobs: JobCount;
  /** what --index is, for a step of several jobs */
  readonly index?: string;
  /** steps whose every job must be done before this one starts */
  readonly after: readonly string[];
  /** a step the plan does itself where it did not run (so it may be skipped); a partial run is refused */
  readonly optional?: boolean;
  /** takes --pack-jobs (the plan) */
  readonly packJobs?: boolean;
  /** the record a finished job leaves in its folder (`<step>-<index>/`, or `<step>/` for a single job) */
  readonly record?: string;
  readonly reads: string;
  readonly writes: string;
}

export const MERGE_STEP_TABLE = [
  {
    name: "dedup",
    jobs: "per_partition",
    index: "a hash range",
    after: [],
    optional: true,
    record: "dedup.json",
    reads: "every partition's document keys (docs.parquet, duplicates.parquet), rows of hash range h",
    writes: "dedup-<h>/: the range's documents that survive the global dedup",
  },
  {
    name: "minhash",
    jobs: "per_partition",
    index: "a band range",
    after: [],
    optional: true,
    record: "minhash.json",
    reads: "every partition's MinHash band keys (minhash.parquet), bands of range b (nothing without dedup.minhash)",
    writes: "minhash-<b>/: the range's band buckets of two or more documents",
  },
  {
    name: "plan",
    jobs: "one",
    after: ["dedup", "minhash"],
    packJobs: true,
    record: "plan.json",
    reads: "the partitions' keys and counts; the dedup and minhash steps' results where they ran",
    writes: "plan/: the global dedup, the near-duplicates, the mixture and the stream's layout, cut into --pack-jobs ranges",
  },
  {
    name: "scatter",
    jobs: "per_partition",
    index: "a partition",
    after: ["plan"],
    record: "scatter.json",
    reads: "partition p's token chunks and the plan's picks",
    writes: "scatter-<p>/: one bin file per pack job",
  },
  {
    name: "gather",
    jobs: "per_pack_job",
    index: "a pack job of the plan",
    after: ["scatter"],
    record: "gather.json",
    reads: "every partition's bin j",
    writes: "gather-<j>/: pack job j's shards and document indexes",
  },
  {
    name: "finish",
    jobs: "one",
    after: ["gather"],
    reads: "the plan and every pack job's shards",
    writes: "the build: shards moved into OUT with the lock, manifest, MIXTURE.md and card",
  },
] as const satisfies readonly MergeStepSpec[];

export type MergeStep = (typeof MERGE_STEP_TABLE)[number]["name"];
export const MERGE_STEPS: readonly MergeStep[] = MERGE_STEP_TABLE.map((s) => s.name);

export function mergeStepSpec(step: MergeStep): MergeStepSpec {
  return MERGE_STEP_TABLE.find((s) => s.name === step)!;
}

/** The steps of several jobs, and what --index means for each ("dedup (a hash range), scatter (a partition), ..."). */
export const indexedSteps = (): MergeStepSpec[] => MERGE_STEP_TABLE.filter((s) => "index" in s);

/** One line a step, for --help: "dedup --index h (one per partition; optional)". */
export function describeSteps(): string {
  const jobs = { one: "1 job", per_partition: "one per partition", per_pack_job: "one per pack job" } as const;
  return (MERGE_STEP_TABLE as readonly MergeStepSpec[])
    .map((s) => `${s.name}${s.index ? ` --index N (${s.index})` : ""}${s.packJobs ? " [--pack-jobs M]" : ""}: ${jobs[s.jobs]}${s.optional ? ", optional" : ""}${s.after.length ? `, after ${s.after.join(" and ")}` : ""}`)
    .join("; ");
}
