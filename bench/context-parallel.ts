/**
 * ChuXin-1.6B at 128K–1M tokens on 8–64 H100s under --context-parallel: a model, not a run. For each sequence
 * length and GPU count it finds the smallest ring (context-parallel size, a power of two dividing the GPUs, the
 * rest data parallelism) whose memory fits one H100, with and without --recompute, and what the ring moves per
 * step against the attention compute it overlaps.
 *   node --import tsx bench/context-parallel.ts [--log bench/results/2026-11-27-h100/gpu-throughput.log] [--json]
 *
 * Measured inputs (read from the log of an H100 run of native/bench/gpu_throughput.cpp, sequence 4,096): the model
 * states, the activations per token with and without recomputation (the micro-batch 1 and recomputed lines'
 * "activations" over their tokens), the rest of the memory in use (context, cuBLASLt, scratch), and the
 * non-attention time per token. Stated assumptions (not measured here): the attention kernels' rates (our fused
 * kernels' 39 TFLOP/s forward and 25 backward, measured on short documents on 2026-11-27, the only rates we have),
 * NVLink 450 GB/s per direction within a node of 8 and InfiniBand 50 GB/s per GPU across nodes, ZeRO-1 over every
 * GPU (fp32 masters and AdamW moments sharded, bf16 weights and fp32 gradients whole), and ring attention's own
 * buffers (native/src/model/context_parallel.cpp: two bf16 key/value blocks, two fp32 gradient blocks and the fp32
 * merged output per token held).
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { parameterCount, PRESETS } from "../src/train/model-config.ts";

const { values } = parseArgs({ options: { log: { type: "string", default: "bench/results/2026-11-27-h100/gpu-throughput.log" }, json: { type: "boolean", default: false } } });

const GiB = 2 ** 30, MiB = 2 ** 20;
const log = readFileSync(values.log!, "utf8");
function measured(pattern: RegExp, what: string): RegExpMatchArray {
  const m = log.match(pattern);
  if (!m) throw new Error(`${values.log}: no line for ${what} (${pattern})`);
  return m;
}
const plain = measured(/seq 4096, micro-batch 1 x (\d+) per step: ([\d.]+) s\/step .*?([\d.]+) GiB of GPU memory in use \(model states (\d+) MiB, activations (\d+) MiB\)/, "micro-batch 1");
const recomputed = measured(/seq 4096, micro-batch (\d+) x \d+ per step with recomputation: .*?\(model states \d+ MiB, activations (\d+) MiB\)/, "recomputation");
const c = PRESETS["chuxin-1.6b"]!;
const params = parameterCount(c);
const statesMeasured = Number(plain[4]) * MiB;
const perToken = (Number(plain[5]) * MiB) / 4096;
const perTokenRecompute = (Number(recomputed[2]) * MiB) / (Number(recomputed[1]) * 4096);
const inUse = Number(plain[3]) * GiB;
const overhead = inUse - statesMeasured - Number(plain[5]) * MiB;
const secondsPerToken4k = Number(plain[2]) / (Number(plain[1]) * 4096);

// Assumptions.
const H100_BYTES = 81_559 * MiB; // cudaMemGetInfo's total on an H100 SXM 80 GB
const NVLINK = 450e9, INFINIBAND = 50e9, GPUS_PER_NODE = 8;
const ATTN_FWD = 39e12, ATTN_BWD = 25e12;
const C = c.hidden, L = c.nLayers;
const ringBytesPerToken = 2 * (2 * C * 2) + 2 * (2 * C * 4) + C * 4;

/** Model states per GPU under ZeRO-1 over `gpus`: bf16 weights and fp32 gradients whole, the 12 bytes of fp32 master and moments sharded. */
const statesPerGpu = (gpus: number) => params * (2 + 4) + (params * 12) / gpus;
/** Attention FLOPs of one causal sequence of S tokens (forward), all layers: 4·L·C·S(S+1)/2. */
const attentionForward = (S: number) => 4 * L * C * ((S * (S + 1)) / 2);

interface Row {
  sequence: number;
  gpus: number;
  recompute: boolean;
  ring: number | null;
  memory_gib: number | null;
  ring_gb_per_step: number | null;
  transfer_over_compute: number | null;
  /** the ring's time for one sequence (its members work in parallel), and the tokens/s of all the rings */
  seconds_per_sequence: number | null;
  tokens_per_s: number | null;
}

function plan(S: number, gpus: number, recompute: boolean): Row {
  for (let ring = 1; ring <= gpus; ring *= 2) {
    if (gpus % ring !== 0 || S % (2 * ring) !== 0) continue;
    const local = S / ring;
    const memory = statesPerGpu(gpus) + overhead + local * ((recompute ? perTokenRecompute : perToken) + (ring > 1 ? ringBytesPerToken : 0));
    if (memory > H100_BYTES) continue;
    // Per GPU and sequence: key/value blocks (bf16) go round ring - 1 times in each forward (twice with recompute)
    // and the backward; their fp32 gradients ring - 1 times and home once.
    const kv = 2 * local * C * 2, grads = 2 * local * C * 4;
    const bytes = ring > 1 ? L * ((recompute ? 2 : 1) * (ring - 1) * kv + (ring - 1) * kv + ring * grads) : 0;
    // A ring step's attention on one block pair set: this GPU's share of the sequence's attention over the steps.
    const attention = attentionForward(S) / ring;
    const computeSeconds = ((recompute ? 2 : 1) * attention) / ATTN_FWD + (2 * attention) / ATTN_BWD;
    const bandwidth = ring <= GPUS_PER_NODE ? NVLINK : INFINIBAND;
    const perStepTransfer = (kv + grads) / bandwidth, perStepCompute = computeSeconds / ring / L;
    const other = secondsPerToken4k * local * (recompute ? 4 / 3 : 1);  // GEMMs and the rest, per token as at 4K (recompute: one more forward)
    return {
      sequence: S,
      gpus,
      recompute,
      ring,
      memory_gib: memory / GiB,
      ring_gb_per_step: bytes / 1e9,
      transfer_over_compute: ring > 1 ? perStepTransfer / perStepCompute : 0,
      seconds_per_sequence: other + computeSeconds,
      tokens_per_s: (S * (gpus / ring)) / (other + computeSeconds),
    };
  }
  return { sequence: S, gpus, recompute, ring: null, memory_gib: null, ring_gb_per_step: null, transfer_over_compute: null, seconds_per_sequence: null, tokens_per_s: null };
}

const rows: Row[] = [];
for (const S of [131_072, 262_144, 524_288, 1_048_576]) for (const gpus of [8, 16, 32, 64]) for (const recompute of [false, true]) rows.push(plan(S, gpus, recompute));
if (values.json) {
  process.stdout.write(JSON.stringify(rows) + "\n");
  process.exit(0);
}
const k = (n: number) => `${n / 1024}K`;
const lines = [
  `Measured (${values.log}): model states ${(statesMeasured / GiB).toFixed(1)} GiB at 1 GPU, activations ${perToken.toFixed(0)} B/token (${perTokenRecompute.toFixed(0)} recomputed), ${(overhead / GiB).toFixed(1)} GiB else in use, ${(secondsPerToken4k * 1e6).toFixed(1)} µs/token at 4K.`,
  `Assumed: ${(H100_BYTES / GiB).toFixed(1)} GiB per H100; ZeRO-1 over all GPUs (${(statesPerGpu(8) / GiB).toFixed(1)} GiB of states at 8, ${(statesPerGpu(64) / GiB).toFixed(1)} at 64); ring buffers ${ringBytesPerToken} B/token; NVLink ${NVLINK / 1e9} GB/s within ${GPUS_PER_NODE}, InfiniBand ${INFINIBAND / 1e9} GB/s beyond; attention ${ATTN_FWD / 1e12}/${ATTN_BWD / 1e12} TFLOP/s.`,
  "",
  "| sequence | GPUs | recompute | smallest ring | memory per GPU | ring traffic per GPU per sequence | transfer / attention per ring step | the ring's seconds per sequence | tokens/s, all GPUs |",
  "|---:|---:|---|---:|---:|---:|---:|---:|---:|",
  ...rows.map((r) =>
    r.ring === null
      ? `| ${k(r.sequence)} | ${r.gpus} | ${r.recompute ? "yes" : "no"} | does not fit | | | | | |`
      : `| ${k(r.sequence)} | ${r.gpus} | ${r.recompute ? "yes" : "no"} | ${r.ring} | ${r.memory_gib!.toFixed(1)} GiB | ${r.ring_gb_per_step!.toFixed(1)} GB | ${r.transfer_over_compute!.toFixed(3)} | ${r.seconds_per_sequence!.toFixed(1)} | ${r.tokens_per_s!.toFixed(0)} |`,
  ),
];
process.stdout.write(lines.join("\n") + "\n");
