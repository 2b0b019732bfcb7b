/**
 * Training-step throughput of the native CPU backend against PyTorch on the same machine, same config,
 * same thread count, in the same run (fp32, and our bf16 mixed precision vs PyTorch bf16 autocast).
 *   node --import tsx bench/train-cpu.ts [--threads N] [--steps 5] [--configs small,medium]
 * A step is forward + backward + global grad norm + AdamW; medians of --steps steps after one warm-up.
 */
import { spawnSync } from "node:child_process";
import { cpus } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { loadAddon, nativeModelConfig, type ModelConfig, type RunOptions } from "../src/native/addon.ts";

const { values } = parseArgs({ options: { threads: { type: "string" }, steps: { type: "string", default: "5" }, configs: { type: "string", default: "small,medium" } } });
const threads = Number(values.threads ?? cpus().length);
const steps = Number(values.steps);

const CONFIGS: Record<string, { model: ModelConfig; seq: number; batch: number }> = {
  small: { model: { nLayers: 4, hidden: 256, nHeads: 8, ffn: 688, vocab: 4096, maxSeq: 256, ropeTheta: 10000, normEps: 1e-5 }, seq: 256, batch: 4 },
  medium: { model: { nLayers: 8, hidden: 512, nHeads: 8, ffn: 1376, vocab: 32000, maxSeq: 512, ropeTheta: 10000, normEps: 1e-5 }, seq: 512, batch: 2 },
};

async function ours(name: string, precision: 0 | 1): Promise<number> {
  const { model: mc, seq, batch } = CONFIGS[name]!;
  const addon = loadAddon();
  const model = new addon.Model(nativeModelConfig(mc), "cpu", threads);
  model.init(0);
  // One document per row (no EOS), as PyTorch's plain causal attention sees it.
  const tokens = Int32Array.from({ length: batch * seq }, (_, i) => (i * 2654435761) % (mc.vocab - 1));
  const opts: RunOptions = { precision, docMask: 1, resetPositions: 1, maskEosLoss: 1, eosId: mc.vocab - 1, recompute: 0 };
  const times: number[] = [];
  for (let s = 0; s <= steps; s++) {
    const start = performance.now();
    model.zeroGrad();
    await model.forwardBackward(tokens, batch, seq, opts, 1 / (batch * (seq - 1)));
    // Clipping at 1 and AdamW as the trainer runs them (one call, the norm read back after).
    await model.clipAdamwStep({ lr: 1e-4, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step: s + 1, decayEmbeddings: 0 }, 1);
    if (s > 0) times.push((performance.now() - start) / 1000);
  }
  model.dispose();
  times.sort((a, b) => a - b);
  return (batch * seq) / times[Math.floor(times.length / 2)]!;
}

let blasCore = "";
let torchVersion = "";

function torch(name: string): Record<string, number> {
  const { model: m, seq, batch } = CONFIGS[name]!;
  const script = join(dirname(fileURLToPath(import.meta.url)), "train_cpu_torch.py");
  const args = [script, m.nLayers, m.hidden, m.nHeads, m.ffn, m.vocab, seq, batch, threads, steps].map(String);
  // These machines set OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE for older OpenBLAS builds; they hold a current one
  // back (fp32 GEMM measured 25 → 54 GFLOP/s without them), so the peer runs without them, in its process only.
  const env = { ...process.env };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  const r = spawnSync("/usr/bin/python3", args, { encoding: "utf8", env });
  if (r.status !== 0) throw new Error(`PyTorch baseline failed (install python3-torch libopenblas0-openmp):\n${r.stderr}`);
  const out: Record<string, number> = {};
  for (const line of r.stdout.trim().split("\n")) {
    const j = JSON.parse(line);
    out[j.mode] = j.tokens_per_s;
    torchVersion = j.torch;
    blasCore = j.blas_core;
  }
  return out;
}

console.log(`CPU training step, ${threads} thread(s), median of ${steps} steps; native GEMM kernel: ${loadAddon().cpuKernel}`);
console.log("| config | ours fp32 tok/s | torch fp32 tok/s | ratio | ours bf16 tok/s | torch bf16-autocast tok/s | ratio |");
console.log("|---|---:|---:|---:|---:|---:|---:|");
for (const name of values.configs!.split(",")) {
  const t = torch(name);
  const fp32 = await ours(name, 1);
  const bf16 = await ours(name, 0);
  console.log(`| ${name} | ${fp32.toFixed(0)} | ${t.fp32!.toFixed(0)} | ${(fp32 / t.fp32!).toFixed(2)}× | ${bf16.toFixed(0)} | ${t.bf16!.toFixed(0)} | ${(bf16 / t.bf16!).toFixed(2)}× |`);
}
console.log(`\nPyTorch ${torchVersion}, OpenBLAS kernel ${blasCore} (OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset for its process)`);
