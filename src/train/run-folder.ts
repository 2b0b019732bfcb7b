/** What a run folder holds besides checkpoints: the recorded options a resume starts from, and metrics.jsonl. */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { RuntimeFailure, UsageError } from "../util/errors.ts";
import { listCheckpoints } from "./checkpoint.ts";
import { RESUMABLE, trainConfigSchema, type TrainConfig } from "./options.ts";

export async function resolveRunConfig(requested: TrainConfig, resume: boolean): Promise<{ config: TrainConfig; from: string | null; changes: string[] }> {
  const runDir = requested.out;
  const checkpoints = await listCheckpoints(runDir);
  if (!resume) {
    if (checkpoints.length > 0) throw new UsageError(`${runDir} already holds checkpoints; pass --resume to continue it, or choose another --out`);
    return { config: requested, from: null, changes: [] };
  }
  if (checkpoints.length === 0) throw new UsageError(`--resume: ${runDir} has no checkpoint to resume from`);
  const savedPath = join(runDir, "run_config.json");
  let savedRaw: Record<string, unknown>;
  try {
    savedRaw = JSON.parse(await readFile(savedPath, "utf8"));
  } catch {
    throw new RuntimeFailure(`${savedPath}: missing or unreadable; cannot resume`);
  }
  // Options added since the run was recorded take their defaults (which keep the old behaviour).
  const parsed = trainConfigSchema.safeParse(savedRaw);
  if (!parsed.success) throw new RuntimeFailure(`${savedPath}: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}; cannot resume`);
  const saved = parsed.data;
  const config = { ...saved };
  const changes: string[] = [];
  // The learning-rate schedule is part of the run: a longer --steps extends training on the recorded
  // schedule (at min_lr once its decay ends) unless --decay-steps asks for a new one.
  const savedDecay = saved.decay_steps ?? saved.steps;
  for (const key of RESUMABLE) {
    let value: unknown = requested[key];
    if (key === "decay_steps" && value === null) value = savedDecay;
    const before = key === "decay_steps" ? savedDecay : saved[key];
    if (value !== before) changes.push(`${key} ${before} → ${value}`);
    Object.assign(config, { [key]: value });
  }
  if (config.steps !== saved.steps && requested.decay_steps === null) {
    changes.push(`the ${saved.schedule} schedule keeps ${saved.schedule === "constant" ? "its rate" : `decaying over ${savedDecay} steps`} (pass --decay-steps to change it)`);
  }
  return { config, from: join(runDir, checkpoints[checkpoints.length - 1]!.name), changes };
}

/** Metrics lines up to `step`; a torn last line (what a kill mid-append leaves) is dropped, any other bad line refused. */
export async function keptMetrics(metricsPath: string, step: number): Promise<{ line: string; value: { step: number; loss?: number; lr?: number; eval_loss?: number; tokens?: number; benchmarks?: Record<string, Record<string, number>> } }[]> {
  const lines = (await readFile(metricsPath, "utf8").catch(() => "")).split("\n");
  const kept = [];
  for (const [i, line] of lines.entries()) {
    if (!line) continue;
    let value;
    try {
      value = JSON.parse(line);
    } catch {
      if (lines.slice(i + 1).every((l) => !l)) break;
      throw new RuntimeFailure(`${metricsPath}:${i + 1}: not a JSON line; fix or remove that line, then resume`);
    }
    if (value.step <= step) kept.push({ line, value });
  }
  return kept;
}
