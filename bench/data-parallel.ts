/**
 * Data parallelism: what it costs here, and a model of what it costs at scale.
 *   node --import tsx bench/data-parallel.ts --data OUT [--steps 6] [--model small]
 *
 * 1. Measured, on this machine's CPUs over gloo, one run after another on the same build: 1 rank with every core,
 *    then R ranks splitting the cores, with the collectives overlapped with compute (the gradient reduction with
 *    the backward, the weights' gather with the next forward) and each after its compute (--no-overlap). Tokens/s are the median step's, from metrics.jsonl. On a machine with few cores this shows
 *    the overhead of the collectives and what the overlap hides, not scaling.
 * 2. Modelled: a ChuXin-1.6B step at 8, 64 and 512 GPUs. The bytes per step are counted from the bucket layout
 *    the code uses (native/src/model/data_parallel.cpp: the LM head and final norm, each block, the embedding;
 *    each split into R pieces); the compute time from a measured single-GPU rate; the link rates are stated
 *    assumptions, not measurements.
 */
import { spawnSync } from "node:child_process";
import { cpus, tmpdir } from "node:os";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { PRESETS } from "../src/train/model-config.ts";

const { values } = parseArgs({
  options: { data: { type: "string" }, steps: { type: "string", default: "6" }, model: { type: "string", default: "small" }, ranks: { type: "string", default: "2" } },
});
const bin = join(dirname(fileURLToPath(import.meta.url)), "..", "bin", "chuxin-data.js");

function measure(label: string, flags: string[]): number {
  const out = mkdtempSync(join(tmpdir(), "chuxin-dp-bench-"));
  try {
    const args = [bin, "train", "--data", values.data!, "--out", out, "--model", values.model!, "--steps", values.steps!, "--context", "256", "--micro-batch", "2"];
    args.push("--global-batch-tokens", String(2 * 256 * 4), "--precision", "fp32", "--eval-every", "0", "--save-every", "0", ...flags);
    const r = spawnSync(process.execPath, args, { encoding: "utf8", env: { ...process.env, CI: "true" } });
    if (r.status !== 0) throw new Error(`${label}: ${r.stderr}`);
    // A step's own rate, from the token counts and times of consecutive lines (the first step holds start-up).
    const lines = readFileSync(join(out, "metrics.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l))
      .filter((m) => m.loss !== undefined);
    const perStep: number[] = [];
    for (let i = 2; i < lines.length; i++) {
      const seconds = (Date.parse(lines[i].time) - Date.parse(lines[i - 1].time)) / 1000;
      perStep.push((lines[i].tokens - lines[i - 1].tokens) / seconds);
    }
    perStep.sort((a, b) => a - b);
    return perStep[Math.floor(perStep.length / 2)]!;
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

if (values.data) {
  const cores = cpus().length;
  const R = Number(values.ranks);
  console.log(`## Measured: ${values.model} model, 4 micro-batches of 2 × 256 tokens per step, fp32, ${cpus()[0]?.model} × ${cores}`);
  const one = measure("1 rank", ["--threads", String(cores)]);
  const overlapped = measure(`${R} ranks`, ["--nproc-per-node", String(R)]);
  const after = measure(`${R} ranks, no overlap`, ["--nproc-per-node", String(R), "--no-overlap"]);
  const zero0 = measure(`${R} ranks, ZeRO-0`, ["--nproc-per-node", String(R), "--zero", "0"]);
  console.log("| run | tokens/s (median step) | vs 1 rank |\n|---|---:|---:|");
  for (const [name, v] of [["1 rank, all cores", one], [`${R} ranks, ZeRO-1, overlapped`, overlapped], [`${R} ranks, ZeRO-1, not overlapped`, after], [`${R} ranks, ZeRO-0 (all-reduce), overlapped`, zero0]] as const) {
    console.log(`| ${name} | ${Math.round(v)} | ${(v / one).toFixed(2)}× |`);
  }
  console.log(`\noverlap: ${((overlapped / after - 1) * 100).toFixed(1)}% more tokens/s than communicating after compute\n`);
}

// ---- The model.
const mc = PRESETS["chuxin-1.6b"]!;
const C = mc.hidden;
const perBlock = 2 * C + 4 * C * C + 3 * C * mc.ffn;
const buckets = [C + mc.vocab * C, ...Array.from({ length: mc.nLayers }, () => perBlock), mc.vocab * C];
const params = buckets.reduce((a, b) => a + b, 0);
const globalTokens = 4 * 1024 * 1024; // 4M tokens per step (LLaMA-2's batch)
const gpuTokensPerS = 57_027; // measured: ChuXin-1.6B, seq 4096, one H200 (bench/results/2026-11-26-h200)
// Assumed link rates per GPU (NCCL bus bandwidth, not line rate): NVLink 4 inside an 8-GPU H100/H200 node, and one
// 400 Gb/s NDR InfiniBand NIC per GPU across nodes.
const nvlink = 360e9;
const infiniband = 45e9;
const backwardShare = 2 / 3; // of a step's compute: the part a bucket's reduction can hide behind
const forwardShare = 1 / 3; // the part the next step's gathers (all but the embedding's, which the forward reads first) hide behind

console.log(`## Modelled: ChuXin-1.6B (${(params / 1e9).toFixed(3)} B parameters), ${globalTokens.toLocaleString("en-US")} tokens per step, ZeRO-1 as the code does it`);
console.log(`compute: ${gpuTokensPerS.toLocaleString("en-US")} tokens/s per GPU (measured on one H200); links: NVLink ${nvlink / 1e9} GB/s, InfiniBand ${infiniband / 1e9} GB/s per GPU (assumed)`);
console.log("| GPUs | link | reduce-scatter bytes/GPU | all-gather bytes/GPU | compute s | reduce-scatter s | all-gather s | exposed s | step s | scaling efficiency |");
console.log("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
for (const R of [8, 64, 512]) {
  // Each rank sends and receives all but its own piece of every bucket: fp32 gradients (the report's fp32
  // reduction), then the bf16 compute copy of the weights (data_parallel.cpp gathers that in a bf16 run, not the
  // fp32 masters).
  const moving = (n: number) => n - Math.floor(n / R);
  const elements = buckets.reduce((a, n) => a + moving(n), 0);
  const moved = elements * 4;
  const gathered = elements * 2;
  const bandwidth = R <= 8 ? nvlink : infiniband;
  const compute = globalTokens / R / gpuTokensPerS;
  const rs = moved / bandwidth;
  const ag = gathered / bandwidth;
  // The reduce-scatter overlaps the backward, bucket by bucket. The all-gather is queued bucket by bucket after
  // the optimizer step and the next forward waits for each as it reaches it: the embedding's (read first) is
  // exposed, the rest hides behind the forward.
  const embeddingGather = (moving(buckets[buckets.length - 1]!) * 2) / bandwidth;
  const exposed = Math.max(0, rs - backwardShare * compute) + embeddingGather + Math.max(0, ag - embeddingGather - forwardShare * compute);
  const step = compute + exposed;
  const gb = (b: number) => `${(b / 1e9).toFixed(2)} GB`;
  console.log(`| ${R} | ${R <= 8 ? "NVLink" : "InfiniBand"} | ${gb(moved)} | ${gb(gathered)} | ${compute.toFixed(3)} | ${rs.toFixed(3)} | ${ag.toFixed(3)} | ${exposed.toFixed(3)} | ${step.toFixed(3)} | ${((compute / step) * 100).toFixed(0)}% |`);
}
console.log(
  "\nWhat moves it: a larger batch per GPU raises compute per byte; reducing the gradients in bf16 would halve the reduce-scatter, against the report's fp32 choice; the embedding's gather, the one left exposed (the forward reads it first; it has only the rest of the optimizer step to hide behind, short under ZeRO-1), could be split so block 0 starts on its first rows.",
);
