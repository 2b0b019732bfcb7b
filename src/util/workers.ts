import { cpus } from "node:os";
import { Worker } from "node:worker_threads";

/** The most worker threads a stage starts: past twice the cores they only add memory and switching. */
export function maxWorkers(): number {
  return Math.max(8, 2 * cpus().length);
}

/**
 * A module of ours beside `from` (an import.meta.url), as the running code has it: `name.ts` when run from
 * source through tsx, `name.js` when run from the compiled dist/.
 */
export function siblingModule(name: string, from: string): URL {
  return new URL(`./${name}${from.endsWith(".ts") ? ".ts" : ".js"}`, from);
}

/** Starts a worker thread on one of our modules: compiled JavaScript directly, TypeScript through tsx. */
export function startTsWorker(entry: URL, data: Record<string, unknown> = {}): Worker {
  if (!entry.pathname.endsWith(".ts")) return new Worker(entry, { workerData: data });
  return new Worker(new URL("./ts-worker.mjs", import.meta.url), { workerData: { ...data, entry: entry.href } });
}
