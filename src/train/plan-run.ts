/**
 * Runs a training plan: each stage is a train run in PLAN_DIR/<stage>/, started from the previous stage's final
 * checkpoint (or its own init_from), its data built first when it is a recipe whose build is missing. A stage that
 * finishes is recorded in PLAN_DIR/plan.lock.json with its final checkpoint's sha256s; a plan resumed after a kill
 * skips those, resumes the stage that was running from its last checkpoint (bit for bit, as train --resume does)
 * and goes on, so the final weights are those of an uninterrupted plan.
 */
import { existsSync } from "node:fs";
import { copyFile, readFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { RuntimeFailure, UsageError } from "../util/errors.ts";
import { makeFolder, writeJsonAtomic } from "../util/atomic.ts";
import { sha256File } from "../util/hash.ts";
import { lockFolder } from "../util/folder-lock.ts";
import { SINGLE, type World } from "./distributed.ts";
import { listCheckpoints, readTrainerState, statePath } from "./checkpoint.ts";
import { parseTrainConfig, type TrainConfig } from "./options.ts";
import { checkChain, type LoadedPlan, type ResolvedStage } from "./plan.ts";
import { resolveModelConfig } from "./model-config.ts";
import { train, type TrainEvent, type TrainOptions } from "./trainer.ts";

export const PLAN_LOCK = "plan.lock.json";
const PLAN_LOCK_FORMAT = "chuxin-data-plan-lock/1";

export interface FinishedStage {
  name: string;
  definition_sha256: string;
  /** the final checkpoint, relative to the plan folder */
  checkpoint: string;
  step: number;
  tokens_seen: number;
  /** sha256 of each file of the final checkpoint */
  files: Record<string, string>;
}

export interface PlanLock {
  format: typeof PLAN_LOCK_FORMAT;
  plan: string;
  stages: FinishedStage[];
}

export type PlanEvent =
  | { type: "stage"; stage: string; index: number; count: number; status: "start" | "resume" | "skip" | "done"; out: string }
  | { type: "stage_build"; stage: string; recipe: string; out: string };

export interface PlanRunOptions extends Pick<TrainOptions, "shouldStop"> {
  resume: boolean;
  device: TrainConfig["device"];
  threads?: number;
  world?: World;
  onEvent: (e: TrainEvent | PlanEvent) => void;
  /** builds a recipe into a folder (the CLI supplies it with its progress rendering) */
  buildData: (recipe: string, out: string) => Promise<void>;
  /** a stage's --eval-tasks scorer (the CLI supplies it from eval/, which train does not import); rank 0 alone */
  benchmarksFor?: (config: TrainConfig) => Promise<TrainOptions["benchmarks"]>;
}

export async function readPlanLock(path: string): Promise<PlanLock | undefined> {
  let raw: string;
  try {
    raw = await readFile(path, "utf8");
  } catch {
    return undefined;
  }
  let lock: PlanLock;
  try {
    lock = JSON.parse(raw);
  } catch (error) {
    throw new RuntimeFailure(`${path}: not JSON (${(error as Error).message}); restore it, or start the plan in a new --out`);
  }
  if (lock.format !== PLAN_LOCK_FORMAT || !Array.isArray(lock.stages)) throw new RuntimeFailure(`${path}: not a ${PLAN_LOCK_FORMAT} file; restore it, or start the plan in a new --out`);
  return lock;
}

/** The stages the lock says are finished, checked against the plan as it is now. */
function finishedStages(lock: PlanLock | undefined, loaded: LoadedPlan, lockPath: string): Map<string, FinishedStage> {
  const done = new Map<string, FinishedStage>();
  for (const [i, entry] of (lock?.stages ?? []).entries()) {
    const stage = loaded.stages[i];
    if (!stage || stage.name !== entry.name) {
      throw new UsageError(`${lockPath}: stage ${i + 1} finished as '${entry.name}', but the plan's stage ${i + 1} is ${stage ? `'${stage.name}'` : "missing"}; finished stages cannot be removed or reordered — start the changed plan in a new --out`);
    }
    if (stage.definitionSha256 !== entry.definition_sha256) {
      throw new UsageError(`${stage.at}: stage '${stage.name}' finished with another definition (${lockPath}); a finished stage cannot change — start the changed plan in a new --out`);
    }
    // The next stage starts from this path: it must be the stage's own checkpoint, inside the plan folder.
    if (typeof entry.checkpoint !== "string" || !new RegExp(`^${stage.name.replace(/\./g, "\\.")}/checkpoint-\\d+$`).test(entry.checkpoint)) {
      throw new RuntimeFailure(`${lockPath}: stage '${entry.name}' names ${JSON.stringify(entry.checkpoint)} as its checkpoint, not one of ${entry.name}/checkpoint-*; the file was edited or damaged: restore it, or start the plan in a new --out`);
    }
    done.set(entry.name, entry);
  }
  return done;
}

/** Every rank runs this with the same plan; rank 0 alone builds, writes the lock and reports. */
export async function runPlan(loaded: LoadedPlan, planDir: string, options: PlanRunOptions): Promise<{ finished: boolean }> {
  const world = options.world ?? SINGLE;
  const root = world.rank === 0;
  const lockPath = join(planDir, PLAN_LOCK);
  // Everything that can refuse the plan is checked before the folder is made.
  const lock = await readPlanLock(lockPath);
  const started = lock !== undefined || (await Promise.all(loaded.stages.map(async (s) => (await listCheckpoints(join(planDir, s.name))).length > 0))).some(Boolean);
  if (started && !options.resume) throw new UsageError(`${planDir} already holds this plan's stages; pass --resume to continue it, or choose another --out`);
  await checkChain(loaded, planDir);
  const done = finishedStages(lock, loaded, lockPath);
  await makeFolder(planDir, "--out");
  const planLock = root ? await lockFolder(planDir, "chuxin-data train --plan") : undefined;
  try {
    if (root) await copyFile(loaded.path, join(planDir, "plan.yaml"));
    const finished: FinishedStage[] = [...done.values()];
    for (const stage of loaded.stages) {
      const out = join(planDir, stage.name);
      const count = loaded.stages.length;
      if (done.has(stage.name)) {
        options.onEvent({ type: "stage", stage: stage.name, index: stage.index, count, status: "skip", out });
        continue;
      }
      if (stage.recipe && !existsSync(join(stage.data, "manifest.json"))) {
        if (world.world > 1) throw new UsageError(`${stage.at}: stage '${stage.name}': its data is not built yet; with several ranks build it first: chuxin-data build ${stage.recipe} --out ${stage.data}`);
        options.onEvent({ type: "stage_build", stage: stage.name, recipe: stage.recipe, out: stage.data });
        await options.buildData(stage.recipe, stage.data);
        if (options.shouldStop?.()) return { finished: false };
      }
      const resume = (await listCheckpoints(out)).length > 0;
      options.onEvent({ type: "stage", stage: stage.name, index: stage.index, count, status: resume ? "resume" : "start", out });
      const config = await stageConfig(stage, out, planDir, finished, options);
      const benchmarks = root && config.eval_tasks && config.eval_tasks_every > 0 ? await options.benchmarksFor?.(config) : undefined;
      await train(config, {
        resume,
        onEvent: options.onEvent,
        ...(options.shouldStop ? { shouldStop: options.shouldStop } : {}),
        ...(benchmarks ? { benchmarks } : {}),
        world,
        modelGiven: stage.modelGiven,
      });
      const entry = await finishedEntry(stage, out, planDir);
      if (!entry) return { finished: false };
      finished.push(entry);
      if (root) await writeJsonAtomic(lockPath, { format: PLAN_LOCK_FORMAT, plan: loaded.path, stages: finished } satisfies PlanLock);
      options.onEvent({ type: "stage", stage: stage.name, index: stage.index, count, status: "done", out });
    }
    return { finished: true };
  } finally {
    await planLock?.release();
  }
}

/** The stage's train options: the plan's, with its folder, data and starting weights. */
async function stageConfig(stage: ResolvedStage, out: string, planDir: string, finished: FinishedStage[], options: PlanRunOptions): Promise<TrainConfig> {
  const initFrom = stage.initFrom === "none" ? null : stage.initFrom === "previous" ? join(planDir, finished[finished.length - 1]!.checkpoint) : stage.initFrom;
  const { name, config: modelConfig } = await resolveModelConfig(String(stage.options.model ?? "tiny"));
  const raw: Record<string, unknown> = {
    ...stage.options,
    data: stage.data,
    out,
    model: name,
    model_config: modelConfig,
    device: options.device,
    init_from: initFrom,
    ...(options.threads !== undefined && stage.options.threads === undefined ? { threads: options.threads } : {}),
  };
  const parsed = parseTrainConfig(raw);
  if (!parsed.ok) throw new UsageError(`${stage.at}: stage '${stage.name}': ${parsed.problems.map((p) => p.replace(/^--([a-z-]+)/, (_, f: string) => f.replace(/-/g, "_"))).join("; ")}`);
  return parsed.config;
}

/** The lock's entry for a stage that reached its last step; undefined when it stopped before (Ctrl-C). */
async function finishedEntry(stage: ResolvedStage, out: string, planDir: string): Promise<FinishedStage | undefined> {
  const recorded = JSON.parse(await readFile(join(out, "run_config.json"), "utf8")) as TrainConfig;
  const checkpoints = await listCheckpoints(out);
  const last = checkpoints[checkpoints.length - 1];
  if (!last || last.step < recorded.steps) return undefined;
  const dir = join(out, last.name);
  const state = await readTrainerState(dir);
  const files: Record<string, string> = { ...(state.files ?? {}) };
  files[relative(dir, statePath(dir))] = await sha256File(statePath(dir));
  return { name: stage.name, definition_sha256: stage.definitionSha256, checkpoint: relative(planDir, dir), step: state.step, tokens_seen: state.tokens_seen, files };
}
