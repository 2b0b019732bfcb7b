/**
 * End-to-end build throughput on the fixture corpus (recipes/fixtures.yaml) through the loopback Hub:
 * MB of text per second, tokens per second, and the share of wall time per stage.
 *   node --import tsx bench/build.ts [--workers N] [--runs R]
 * The first run fills the HF cache; every run starts from an empty output folder (no reused chunks).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { hubEnv } from "../src/hub/env.ts";
import { build } from "../src/pipeline/build.ts";
import type { ProgressEvent } from "../src/pipeline/progress.ts";
import { HubServer } from "../test/helpers/hub-server.ts";
import { repoRoot, sharedHub } from "../test/helpers/paths.ts";

const { values } = parseArgs({ options: { workers: { type: "string" }, runs: { type: "string", default: "3" } } });
const workers = Number(values.workers ?? cpus().length);
const server = await new HubServer({ root: sharedHub }).start();
const work = await mkdtemp(join(tmpdir(), "chuxin-bench-"));
const env = hubEnv({ HF_ENDPOINT: server.url, HF_HOME: join(work, "hf") });

const results: { seconds: number; stages: Record<string, number>; bytes: number; tokens: number }[] = [];
for (let run = 0; run < Number(values.runs); run++) {
  const stages: Record<string, number> = {};
  let bytes = 0;
  let tokens = 0;
  const sink = (e: ProgressEvent) => {
    if (e.type === "stage_end") stages[e.stage] = e.seconds;
    if (e.type === "stage_progress" && e.stage === "tokenize" && e.bytes) bytes = e.bytes;
    if (e.type === "stage_end" && e.stage === "tokenize") tokens = e.done ?? 0;
  };
  const out = join(work, `out-${run}`);
  const started = performance.now();
  await build({ recipePath: join(repoRoot, "recipes", "fixtures.yaml"), outDir: out, workers, env, sink });
  const seconds = (performance.now() - started) / 1000;
  await rm(out, { recursive: true, force: true });
  results.push({ seconds, stages, bytes, tokens });
}
await server.stop();
await rm(work, { recursive: true, force: true });

// The first run also downloads; report the median of the rest.
const timed = results.length > 1 ? results.slice(1) : results;
const median = [...timed].sort((a, b) => a.seconds - b.seconds)[Math.floor(timed.length / 2)]!;
console.log(`build of recipes/fixtures.yaml, ${workers} tokenizer worker(s), median of ${timed.length} run(s)`);
console.log(`  unique text tokenised: ${(median.bytes / 1e6).toFixed(2)} MB, ${median.tokens.toLocaleString("en-US")} tokens`);
console.log(`  wall: ${median.seconds.toFixed(2)} s → ${(median.bytes / 1e6 / median.seconds).toFixed(2)} MB/s, ${(median.tokens / median.seconds / 1e3).toFixed(1)}k tokens/s end to end`);
const total = Object.values(median.stages).reduce((a, b) => a + b, 0);
for (const [stage, s] of Object.entries(median.stages)) console.log(`  ${stage.padEnd(9)} ${s.toFixed(3).padStart(7)} s  ${((100 * s) / total).toFixed(1).padStart(5)}%`);
