/**
 * What `eval --tasks` leaves beside the checkpoint: `results.json` (every metric, how it was measured, the exact
 * dataset files) and `eval/<task>.samples.jsonl` (per row: log-likelihoods or completion and outcome). The samples
 * are moved in first and results.json last, each through a temporary file, so a killed eval leaves the previous
 * results (or none), never a results.json for work that did not finish. Tasks measured earlier on the same weights
 * are kept; on other weights they are dropped.
 */
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic, writeJsonAtomic } from "../util/atomic.ts";
import { sha256Hex } from "../util/hash.ts";
import { TOOL_VERSION } from "../util/version.ts";
import type { Sample, TaskResult } from "./benchmarks.ts";
import type { TaskLock } from "../tasks/dataset.ts";

export const RESULTS_FILE = "results.json";
export const LOCK_FILE = "eval.lock.json";

export interface ResultsFile {
  format: "chuxin-data eval results v1";
  created_by: string;
  checkpoint: { step?: number; tokens_seen?: number; model_sha256?: string };
  precision: "fp32" | "bf16";
  tasks: Record<string, TaskResult & { samples_file: string; samples_sha256: string }>;
}

export interface EvalLock {
  lock_version: 1;
  tasks: TaskLock[];
}

export async function readJsonIfPresent<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(path, "utf8")) as T;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
}

export async function writeResults(
  dir: string,
  checkpoint: ResultsFile["checkpoint"],
  precision: ResultsFile["precision"],
  done: { result: TaskResult; samples: Sample[] }[],
): Promise<ResultsFile> {
  const previous = await readJsonIfPresent<ResultsFile>(join(dir, RESULTS_FILE)).catch(() => undefined);
  const keep = previous && previous.checkpoint?.model_sha256 === checkpoint.model_sha256 && previous.precision === precision ? previous.tasks : {};
  await mkdir(join(dir, "eval"), { recursive: true });
  const tasks: ResultsFile["tasks"] = { ...keep };
  for (const { result, samples } of done) {
    const samplesFile = `eval/${result.task}.samples.jsonl`;
    const text = samples.map((s) => JSON.stringify(s)).join("\n") + "\n";
    await writeFileAtomic(join(dir, samplesFile), text);
    tasks[result.task] = { ...result, samples_file: samplesFile, samples_sha256: sha256Hex(text) };
  }
  const out: ResultsFile = {
    format: "chuxin-data eval results v1",
    created_by: `chuxin-data ${TOOL_VERSION}`,
    checkpoint,
    precision,
    tasks: Object.fromEntries(Object.entries(tasks).sort(([a], [b]) => (a < b ? -1 : 1))),
  };
  await writeJsonAtomic(join(dir, RESULTS_FILE), out);
  return out;
}

export async function writeLock(path: string, locks: TaskLock[]): Promise<void> {
  const previous = await readJsonIfPresent<EvalLock>(path).catch(() => undefined);
  const byTask = new Map((previous?.tasks ?? []).map((t) => [t.task, t]));
  for (const l of locks) byTask.set(l.task, l);
  await writeJsonAtomic(path, { lock_version: 1, tasks: [...byTask.values()].sort((a, b) => (a.task < b.task ? -1 : 1)) } satisfies EvalLock);
}
