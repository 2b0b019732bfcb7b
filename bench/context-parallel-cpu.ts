/**
 * Context parallelism on this machine's CPU, through the real bin (issue 36): the tiny model at each context on
 * 1 rank and on a ring of 2 (and 2 rings of 2 with --four), the same windows, fp32. Prints, per context, the
 * largest difference from 1 rank in loss and gradient norm (relative) and in the final weights (absolute), the
 * activation bytes and peak RSS of rank 0, and tokens/s.
 *   node --import tsx bench/context-parallel-cpu.ts --data out/sample [--contexts 8192,16384,32768] [--steps 10,3,3] [--four]
 * The build needs enough tokens for steps × context per run (out/sample: `npm run hub:local &` then
 * `HF_ENDPOINT=http://127.0.0.1:8080 npx chuxin-data build recipes/sample.yaml --out out/sample`).
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { readSafetensors } from "../src/train/safetensors.ts";

const { values } = parseArgs({
  options: {
    data: { type: "string" },
    contexts: { type: "string", default: "8192,16384,32768" },
    steps: { type: "string", default: "10,3,3" },
    four: { type: "boolean", default: false },
  },
});
if (!values.data) throw new Error("--data BUILD is required (see the header)");
const bin = join(import.meta.dirname, "..", "bin", "chuxin-data.js");
const work = mkdtempSync(join(tmpdir(), "chuxin-cp-bench-"));
const threads = Math.max(1, Math.floor(cpus().length / 2));

interface Run {
  metrics: { step: number; loss?: number; grad_norm?: number }[];
  memory: { activation_bytes: number; peak_rss_bytes: number };
  tokensPerS: number;
  dir: string;
}
function train(context: number, steps: number, ranks: number, ring: number): Run {
  const dir = join(work, `c${context}-r${ranks}-cp${ring}`);
  const args = [bin, "train", "--data", values.data!, "--out", dir, "--model", "tiny", "--force-positions", "--context", String(context), "--micro-batch", "1"];
  args.push("--global-batch-tokens", String(context * (ranks / ring)), "--steps", String(steps), "--save-every", String(steps), "--eval-every", "0");
  args.push("--precision", "fp32", "--lr", "3e-3", "--warmup-steps", "1", "--threads", String(threads), "--json");
  if (ranks > 1) args.push("--nproc-per-node", String(ranks), "--context-parallel", String(ring));
  const r = spawnSync(process.execPath, args, { encoding: "utf8", env: { ...process.env, CI: "true" } });
  if (r.status !== 0) throw new Error(`${context} on ${ranks} ranks: ${r.stderr}`);
  const events = r.stdout.trim().split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
  const metrics = readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  const last = metrics.filter((m: { tokens_per_s?: number }) => m.tokens_per_s).pop();
  return { metrics, memory: events.find((e) => e.type === "memory"), tokensPerS: last.tokens_per_s, dir };
}
async function weightDifference(a: string, b: string, step: number): Promise<number> {
  const name = `checkpoint-${String(step).padStart(7, "0")}`;
  const [x, y] = await Promise.all([readSafetensors(join(a, name, "model.safetensors")), readSafetensors(join(b, name, "model.safetensors"))]);
  let worst = 0;
  for (const [k, t] of x) for (let i = 0; i < t.data.length; i++) worst = Math.max(worst, Math.abs(t.data[i]! - y.get(k)!.data[i]!));
  return worst;
}
const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(a), Math.abs(b));

const lines = [
  `CPU: ${cpus()[0]?.model ?? "?"}, ${cpus().length} cores, ${threads} threads per rank; tiny model, fp32, micro-batch 1, lr 3e-3`,
  "",
  "| context | ranks | ring | steps | loss vs 1 rank (rel) | grad norm vs 1 rank (rel) | weights vs 1 rank (abs) | activations MiB, rank 0 | peak RSS MiB, rank 0 | tokens/s |",
  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
];
const contexts = values.contexts!.split(",").map(Number);
const stepsList = values.steps!.split(",").map(Number);
for (const [i, context] of contexts.entries()) {
  const steps = stepsList[i] ?? stepsList[stepsList.length - 1]!;
  const single = train(context, steps, 1, 1);
  const row = (r: Run, ranks: number, ring: number, loss: string, norm: string, weights: string) =>
    `| ${context.toLocaleString("en-US")} | ${ranks} | ${ring} | ${steps} | ${loss} | ${norm} | ${weights} | ${(r.memory.activation_bytes / 2 ** 20).toFixed(0)} | ${(r.memory.peak_rss_bytes / 2 ** 20).toFixed(0)} | ${r.tokensPerS} |`;
  lines.push(row(single, 1, 1, "", "", ""));
  for (const [ranks, ring] of values.four ? [[2, 2], [4, 2]] : [[2, 2]]) {
    const r = train(context, steps, ranks!, ring!);
    let loss = 0, norm = 0;
    r.metrics.forEach((m, k) => {
      const w = single.metrics[k]!;
      if (m.loss !== undefined) loss = Math.max(loss, rel(m.loss, w.loss!));
      if (m.grad_norm !== undefined) norm = Math.max(norm, rel(m.grad_norm, w.grad_norm!));
    });
    // 2 rings of 2 train on twice the windows a step: their trajectory is not the single rank's; memory only.
    const same = ranks === ring;
    lines.push(row(r, ranks!, ring!, same ? loss.toExponential(1) : "(2 windows a step)", same ? norm.toExponential(1) : "", same ? (await weightDifference(r.dir, single.dir, steps)).toExponential(1) : ""));
  }
  process.stderr.write(`${context} done\n`);
}
rmSync(work, { recursive: true, force: true });
process.stdout.write(lines.join("\n") + "\n");
