/**
 * `train --eval-tasks`: the benchmarks scored on the weights being trained, every --eval-tasks-every steps. The task
 * files are read before the first step (a typo fails the command at once); each call downloads nothing twice (the
 * Hub cache) and returns each task's metrics.
 */
import { HubClient } from "../hub/client.ts";
import { hubEnv } from "../hub/env.ts";
import type { ModelConfig, NativeModel, RunOptions } from "../native/addon.ts";
import { readManifest } from "../shards/manifest-file.ts";
import { tokenizerForManifest } from "../shards/tokenizer-for.ts";
import { loadTasks } from "../tasks/load.ts";
import { runTask, scoringRunOptions } from "./benchmarks.ts";

export async function trainingBenchmarks(
  list: string,
  dataDir: string,
  model: ModelConfig,
  limit: number,
  onNote: (message: string) => void,
): Promise<(m: NativeModel, run: RunOptions, eosId: number) => Promise<Record<string, Record<string, number>>>> {
  const tasks = await loadTasks(list);
  const tokenizer = await tokenizerForManifest(await readManifest(dataDir), dataDir);
  const client = new HubClient(hubEnv(), { onNote });
  return async (m, run, eosId) => {
    const out: Record<string, Record<string, number>> = {};
    for (const task of tasks) {
      const { result } = await runTask(
        client,
        // In the run's own precision, so the compute copy of the weights stays as training keeps it.
        { model: m, tokenizer, vocab: model.vocab, maxLength: model.maxSeq, eosId, bosId: tokenizer.bosId, run: scoringRunOptions(run.precision, eosId) },
        task,
        { limit: limit > 0 ? limit : undefined, batchTokens: 4096, allowNetwork: false, python: process.env.CHUXIN_PYTHON || "python3", sampleIds: false },
        (e) => {
          if (e.type === "note") onNote(e.message);
        },
      );
      // Each metric and its standard error (lm-evaluation-harness's <metric>_stderr), for the curves' bands.
      out[task.spec.task] = Object.fromEntries(
        Object.entries(result.metrics).flatMap(([k, v]) => [[k, v.value], ...(Number.isFinite(v.stderr) ? [[`${k}_stderr`, v.stderr]] : [])]),
      );
    }
    return out;
  };
}
