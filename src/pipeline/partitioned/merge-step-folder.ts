/** What every step of a merge run as jobs (merge-steps.ts) shares: its context, its folder, its database. */
import { mkdir, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import type { LoadedRecipe } from "../../recipe/load.ts";
import { BuildDb } from "../../util/duckdb.ts";
import { lockFolder, type FolderLock } from "../../util/folder-lock.ts";
import { duckdbShares, memoryBudget, type BuildOptions } from "../build.ts";
import { UsageError } from "../../util/errors.ts";
import type { MergeStep } from "./merge-format.ts";
import type { Partition } from "./partitions.ts";

export interface StepContext {
  options: BuildOptions;
  loaded: LoadedRecipe;
  parts: Partition[];
  mergeDir: string;
  /** the command line of a step, for messages */
  command: (step: MergeStep, index?: number | string) => string;
}

/**
 * The plan over an optional step's ranges (dedup, minhash): all of them or none, so one done and another missing or
 * made from other inputs is refused, naming them and the command to run for each.
 */
export function requireEveryRange(step: MergeStep, missing: number[], stale: number[], run: string): void {
  if (missing.length === 0 && stale.length === 0) return;
  const said = [
    missing.length > 0 ? `range(s) ${missing.join(", ")} not finished` : "",
    stale.length > 0 ? `range(s) ${stale.join(", ")} made from another recipe or other partitions (rebuilt since)` : "",
  ].filter(Boolean);
  throw new UsageError(`the merge's ${step} steps are not all done: ${said.join("; ")}. Run ${run} for each, then the plan again`);
}

/** A file's size, or -1 where it is missing: what the steps check each other's files by. */
export const fileSize = (path: string): Promise<number> => stat(path).then((s) => s.size, () => -1);

/** Runs `body` in `folder`.tmp, locked against a second runner of the same step, and renames it to `folder` when whole. */
export async function inStepFolder<T>(ctx: StepContext, folder: string, what: string, body: (tmp: string) => Promise<T>): Promise<T> {
  const lockDir = join(ctx.mergeDir, "locks", folder);
  await mkdir(lockDir, { recursive: true });
  const lock: FolderLock = await lockFolder(lockDir, what);
  const final = join(ctx.mergeDir, folder);
  const tmp = `${final}.tmp`;
  try {
    await rm(tmp, { recursive: true, force: true });
    await mkdir(tmp, { recursive: true });
    const result = await body(tmp);
    await rm(final, { recursive: true, force: true });
    await rename(tmp, final);
    return result;
  } catch (error) {
    await rm(tmp, { recursive: true, force: true });
    throw error;
  } finally {
    await lock.release();
  }
}

/**
 * A DuckDB of a step's own, in memory, spilling into its folder: steps run side by side on one shared work folder.
 * `share`: a build's reading share (dedup) or its packing share (the pack steps), build.ts duckdbShares.
 */
export function stepDb(options: BuildOptions, tmp: string, share: "reading" | "packing" = "packing"): Promise<BuildDb> {
  return BuildDb.open(":memory:", 2, { memoryBytes: duckdbShares(memoryBudget(options).bytes)[share], tempDirectory: join(tmp, "duckdb-tmp") });
}
