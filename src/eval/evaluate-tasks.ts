/** The benchmarks of `eval --tasks` on one opened checkpoint: every task run, then results and lock written. */
import { join } from "node:path";
import { HubClient } from "../hub/client.ts";
import { hubEnv, type HubEnv } from "../hub/env.ts";
import type { ProgressSink } from "../pipeline/progress.ts";
import { UsageError } from "../util/errors.ts";
import { sha256File } from "../util/hash.ts";
import { runTask, scoringRunOptions, type ModelUnderTest, type Sample, type TaskResult } from "./benchmarks.ts";
import { statePath } from "../train/checkpoint.ts";
import type { LoadedCheckpoint } from "./checkpoint.ts";
import { checkpointTokenizer } from "./generate.ts";
import { LOCK_FILE, readJsonIfPresent, writeLock, writeResults, type EvalLock, type ResultsFile } from "./results.ts";
import type { LoadedTask } from "../tasks/load.ts";

export interface EvalTasksOptions {
  tasks: LoadedTask[];
  limit?: number;
  batchTokens: number;
  precision: "fp32" | "bf16";
  /** Replay the datasets recorded in the lock instead of resolving revisions. */
  locked: boolean;
  /** Where results.json, eval/ and eval.lock.json go (default: the checkpoint folder). */
  outDir?: string;
  allowNetwork: boolean;
  sampleIds: boolean;
  env?: HubEnv;
}

export async function evaluateTasks(ckpt: LoadedCheckpoint, o: EvalTasksOptions, sink: ProgressSink): Promise<{ results: ResultsFile; ran: TaskResult[] }> {
  const outDir = o.outDir ?? ckpt.dir;
  const lockPath = join(outDir, LOCK_FILE);
  let locked: Map<string, EvalLock["tasks"][number]> | undefined;
  if (o.locked) {
    const lock = await readJsonIfPresent<EvalLock>(lockPath).catch((error: Error) => {
      throw new UsageError(`--locked: ${lockPath} is not a readable lock (${error.message.split("\n")[0]}); delete it and run eval once without --locked`);
    });
    if (!lock) throw new UsageError(`--locked: ${lockPath} does not exist; run eval once without --locked to write it`);
    if (lock.lock_version !== 1 || !Array.isArray(lock.tasks)) throw new UsageError(`--locked: ${lockPath} is not a chuxin-data eval lock (lock_version 1 with 'tasks'); delete it and run eval once without --locked`);
    locked = new Map(lock.tasks.map((t) => [t.task, t]));
  }
  const client = new HubClient(o.env ?? hubEnv(), {
    onRetry: (what, attempt, error) => sink({ type: "retry", stage: "download", what, attempt, error }),
    onBytes: (path, received, total) => sink({ type: "download_progress", stage: "download", path, received, total }),
    onNote: (message) => sink({ type: "note", stage: "download", message }),
  });
  const tokenizer = await checkpointTokenizer(ckpt);
  const m: ModelUnderTest = {
    model: ckpt.model,
    tokenizer,
    vocab: ckpt.config.vocab,
    maxLength: ckpt.config.maxSeq,
    eosId: ckpt.eosId,
    bosId: ckpt.bosId,
    run: scoringRunOptions(o.precision === "fp32" ? 1 : 0, ckpt.eosId),
  };
  const done: { result: TaskResult; samples: Sample[] }[] = [];
  for (const task of o.tasks) {
    done.push(
      await runTask(client, m, task, { limit: o.limit, batchTokens: o.batchTokens, locked, allowNetwork: o.allowNetwork, python: process.env.CHUXIN_PYTHON || "python3", sampleIds: o.sampleIds }, sink),
    );
  }
  if (!o.locked) await writeLock(lockPath, done.map((d) => d.result.dataset));
  const state = await readJsonIfPresent<{ step?: number; tokens_seen?: number; files?: Record<string, string> }>(statePath(ckpt.dir)).catch(() => undefined);
  const results = await writeResults(outDir, { step: state?.step, tokens_seen: state?.tokens_seen, model_sha256: state?.files?.["model.safetensors"] ?? (await sha256File(join(ckpt.dir, "model.safetensors"))) }, o.precision, done);
  return { results, ran: done.map((d) => d.result) };
}
