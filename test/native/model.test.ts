import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { loadAddon, type NativeModelConfig, type RunOptions } from "../../src/native/addon.ts";
import { repoRoot } from "../helpers/paths.ts";

const EOS = 63;
// Head size 32: the blocked attention path (the native gradient checks cover sizes 8 and 32).
const config: NativeModelConfig = { nLayers: 2, hidden: 64, nHeads: 2, ffn: 96, vocab: 64, maxSeq: 64, ropeTheta: 10000, normEps: 1e-5 };
const fp32: RunOptions = { precision: 1, docMask: 1, resetPositions: 1, maskEosLoss: 1, eosId: EOS, recompute: 0 };
const bf16: RunOptions = { ...fp32, precision: 0 };

function model(seed = 1) {
  const m = new (loadAddon().Model)(config, "cpu", 2);
  m.init(seed);
  return m;
}

/** A native test program's summary says nothing failed, at least one check ran, and the named checks are among those that passed. */
function assertAllPassed(stdout: string, named: string[]): void {
  const summary = stdout.match(/^(\d+) passed, (\d+) failed$/m);
  assert.ok(summary, `no summary line in:\n${stdout}`);
  assert.equal(Number(summary[2]), 0, stdout);
  assert.ok(Number(summary[1]) > 0);
  for (const name of named) assert.ok(stdout.split("\n").some((l) => l.startsWith("ok ") && l.includes(name)), `${name} ran and passed`);
}

describe("native model (CPU backend)", () => {
  it("passes the op-level and whole-model gradient checks against finite differences", () => {
    const r = spawnSync(join(repoRoot, "native", "build", "chuxin_native_test"), { encoding: "utf8" });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    // Each check reports itself; adding one must not edit this test.
    assertAllPassed(r.stdout, ["matmul dweight", "rmsnorm dinp", "attention dq (head size 8)"]);
  });

  // The GPU check's parity part with the CUDA kernels run under a CPU emulation of the CUDA execution model
  // (native/test/emu): built wherever the toolkit's headers are, as on CI; it exercises the kernels' logic, not a GPU.
  const emulated = join(repoRoot, "native", "build", "chuxin_gpu_check_emulated");
  it("runs the CUDA kernels under the CPU emulation: every op, the fused attention and the whole model match the CPU backend", { skip: !existsSync(emulated) && "built only where the CUDA headers are" }, () => {
    const r = spawnSync(emulated, { encoding: "utf8" });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assertAllPassed(r.stdout, ["whole model loss (bf16, cuda)", "fused attention D=64 backward dk (bf16)"]);
    assert.match(r.stdout, /ok +recompute, after a run at the other precision: loss and gradient tensors that differ \(bf16, cuda\)/);
    assert.match(r.stdout, /ok +fused vs reference CUDA attention dk/);
  });

  const throughput = join(repoRoot, "native", "build", "chuxin_gpu_throughput_emulated");
  it("runs the GPU throughput program's logic under the CPU emulation (tiny model; its timings mean nothing)", { skip: !existsSync(throughput) && "built only where the CUDA headers are" }, () => {
    const r = spawnSync(throughput, ["--config", "tiny", "--micro-batches", "1,2", "--recompute-micro-batches", "2", "--accumulate", "2", "--steps", "1"], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /op profile, one row of 256 tokens/);
    assert.match(r.stdout, /lm_head_cross_entropy \(fwd\+bwd\) +1 calls/);
    assert.match(r.stdout, /tiny model, seq 256, micro-batch 2 x 2 per step: .* tokens\/s/);
    assert.match(r.stdout, /tiny model, seq 256, micro-batch 2 x 2 per step with recomputation: .* tokens\/s/);
    assert.match(r.stdout, /^ours best: micro-batch \d x 2 per step( with recomputation)?, \d+ tokens\/s/m);
    assert.match(r.stdout, /MFU [\d.]+% \(forward\+backward alone [\d.]+%; published convention [\d.]+%\)/);
    // Mix c of the GPU benchmark: one document per row, every causal pair.
    const full = spawnSync(throughput, ["--config", "tiny", "--rows", "full", "--micro-batches", "1", "--accumulate", "1", "--steps", "1"], { encoding: "utf8" });
    assert.equal(full.status, 0, full.stdout + full.stderr);
    assert.match(full.stdout, /^row: 256 tokens, 1 documents, mean length 256, .* \(100\.0% of causal\)$/m);
    assert.match(full.stdout, /^ours best: .* \(full rows\)$/m);
  });

  const attentionBench = join(repoRoot, "native", "build", "chuxin_attention_bench_emulated");
  it("runs the attention benchmark's logic under the CPU emulation (small shapes; its timings mean nothing)", { skip: !existsSync(attentionBench) && "built only where the CUDA headers are" }, () => {
    const r = spawnSync(attentionBench, ["--tokens", "256", "--heads", "2", "--lengths", "32,256"], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^cuda attention, 256 tokens, 2 heads of 64, bf16/m);
    assert.match(r.stdout, /^\| 32 \| 8 \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \|$/m);
    assert.match(r.stdout, /^\| 256 \| 1 \| /m);
  });

  it("schedules the fused attention's tiles and searches for cuBLASLt correctly (CUDA host logic, no GPU needed)", () => {
    const r = spawnSync(join(repoRoot, "native", "build", "chuxin_cuda_host_test"), { encoding: "utf8" });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assertAllPassed(r.stdout, ["forward/dQ tiles cover every visible pair", "tiles outside documents are skipped"]);
  });

  for (const [name, opts] of [["fp32", fp32], ["bf16", bf16]] as const) {
    it(`keeps documents apart (${name}): editing one leaves the other's losses unchanged`, async () => {
      const m = model();
      // Row: doc A (tokens 0..9, ends with EOS) then doc B.
      const seq = Int32Array.from({ length: 24 }, (_, i) => (i === 9 ? EOS : (i * 7 + 3) % 60));
      const edited = seq.slice();
      edited[4] = 50;
      const a = await m.forwardLosses(seq, 1, 24, opts);
      const b = await m.forwardLosses(edited, 1, 24, opts);
      for (let t = 10; t < 23; t++) assert.equal(a[t], b[t], `position ${t} of the second document`);
      assert.notEqual(a[3], b[3], "the edited document's own losses change");
      m.dispose();
    });

    it(`gives two packed documents the same losses as each alone, with positions reset (${name})`, async () => {
      const m = model();
      const docA = Int32Array.from([5, 9, 14, 2, 33, 8, EOS]);
      const docB = Int32Array.from([7, 7, 21, 40, 3, 11, 19, 4]);
      const packed = Int32Array.from([...docA, ...docB]);
      const together = await m.forwardLosses(packed, 1, packed.length, opts);
      const aloneA = await m.forwardLosses(docA, 1, docA.length, opts);
      const aloneB = await m.forwardLosses(docB, 1, docB.length, opts);
      for (let t = 0; t < docA.length - 1; t++) assert.ok(Math.abs(together[t]! - aloneA[t]!) <= 1e-5, `doc A position ${t}`);
      assert.ok(Number.isNaN(together[docA.length - 1]!), "the EOS position has no target");
      for (let t = 0; t < docB.length - 1; t++) assert.ok(Math.abs(together[docA.length + t]! - aloneB[t]!) <= 1e-5, `doc B position ${t}`);
      m.dispose();
    });
  }

  it("overfits one batch to near-zero loss", async () => {
    const m = model(3);
    const B = 2, T = 32;
    const tokens = Int32Array.from({ length: B * T }, (_, i) => (i * 11 + (i >> 3)) % 60);
    let loss = Infinity;
    for (let step = 1; step <= 150; step++) {
      m.zeroGrad();
      const r = await m.forwardBackward(tokens, B, T, bf16, 1 / (B * (T - 1)));
      loss = r.lossSum / r.count;
      await m.adamwStep({ lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0, gradScale: 1, step, decayEmbeddings: 0 });
    }
    assert.ok(loss < 0.05, `final loss ${loss}`);
    m.dispose();
  });

  it("recomputes blocks on request: the same loss and gradient bits, and fewer activation bytes held", async () => {
    const tokens = Int32Array.from({ length: 2 * 48 }, (_, i) => (i % 13 === 12 ? EOS : (i * 3 + 2) % 60));
    const run = async (recompute: 0 | 1) => {
      const m = model(4);
      m.zeroGrad();
      const r = await m.forwardBackward(tokens, 2, 48, { ...bf16, recompute }, 0.01);
      const grads = m.tensors().map((_, i) => m.getTensor(1, i));
      const memory = m.memory();
      // What the model predicts a step of this size holds is what it holds after one (the CPU has no batch-sized
      // scratch), and the prediction is linear in tokens.
      assert.equal(m.activationBytes(2 * 48, bf16.precision, recompute), memory.activations);
      assert.equal(m.activationBytes(4 * 2 * 48, bf16.precision, recompute), 4 * memory.activations);
      assert.equal(m.deviceMemory(), null);
      m.dispose();
      return { loss: r.lossSum, grads, memory };
    };
    const kept = await run(0);
    const recomputed = await run(1);
    assert.equal(recomputed.loss, kept.loss);
    assert.deepEqual(recomputed.grads, kept.grads);
    assert.equal(recomputed.memory.states, kept.memory.states);
    assert.ok(recomputed.memory.activations < kept.memory.activations, JSON.stringify({ kept: kept.memory, recomputed: recomputed.memory }));
  });

  it("clips on the backend as the host would: the same weights as adamwStep with gradScale = maxNorm / norm, and nothing moves on a NaN", async () => {
    const tokens = Int32Array.from({ length: 2 * 32 }, (_, i) => (i % 11 === 10 ? EOS : (i * 7 + 5) % 60));
    const hp = { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step: 1, decayEmbeddings: 0 as const };
    const [a, b] = [model(6), model(6)];
    for (const m of [a, b]) {
      m.zeroGrad();
      await m.forwardBackward(tokens, 2, 32, bf16, 0.05);
    }
    const norm = await a.gradNorm();
    const maxNorm = norm / 4;
    assert.equal(await a.clipAdamwStep(hp, maxNorm), norm);
    await b.adamwStep({ ...hp, gradScale: Math.fround(Math.fround(maxNorm) / norm) });
    for (let i = 0; i < a.tensors().length; i++) assert.deepEqual(a.getTensor(0, i), b.getTensor(0, i), a.tensors()[i]!.name);
    // A NaN gradient: the norm says so and no weight moves.
    const g = a.getTensor(1, 2);
    g[3] = NaN;
    a.setTensor(1, 2, g);
    const before = a.tensors().map((_, i) => a.getTensor(0, i));
    assert.ok(Number.isNaN(await a.clipAdamwStep({ ...hp, step: 2 }, maxNorm)));
    assert.deepEqual(a.tensors().map((_, i) => a.getTensor(0, i)), before);
    a.dispose();
    b.dispose();
  });

  it("is deterministic: the same step twice gives the same bits, whatever the thread count", async () => {
    const tokens = Int32Array.from({ length: 2 * 48 }, (_, i) => (i % 17 === 16 ? EOS : (i * 5 + 1) % 60));
    const run = async (threads: number) => {
      const m = new (loadAddon().Model)(config, "cpu", threads);
      m.init(9);
      m.zeroGrad();
      const r = await m.forwardBackward(tokens, 2, 48, bf16, 0.01);
      const g = m.getTensor(1, 3);
      m.dispose();
      return { loss: r.lossSum, g };
    };
    const one = await run(1);
    const two = await run(2);
    const again = await run(2);
    assert.equal(one.loss, two.loss);
    assert.deepEqual(two.g, again.g);
    assert.deepEqual(one.g, two.g);
  });

  it("refuses bad input with a JS error and a code, never a crash", async () => {
    const m = model();
    await assert.rejects(m.forwardLosses(Int32Array.from([1, 2, 64]), 1, 3, fp32), (e: any) => {
      assert.equal(e.code, "CX_INVALID_ARGUMENT");
      assert.match(e.message, /token id 64 at row 0 position 2 is outside the vocabulary \(size 64\)/);
      return true;
    });
    await assert.rejects(m.forwardLosses(new Int32Array(65), 1, 65, fp32), /sequence length 65 exceeds the model's context 64/);
    assert.throws(() => m.forwardLosses(new Int32Array(3), 2, 2, fp32), /exactly B\*T ids/);
    assert.throws(() => new (loadAddon().Model)({ ...config, hidden: 30 }, "cpu", 1), /hidden 30 must split into 2 heads of an even size/);
    assert.throws(() => new (loadAddon().Model)(config, "tpu", 1), /unknown backend 'tpu'/);
    // More than any address space holds: an error with the fix, not a crash.
    assert.throws(
      () => new (loadAddon().Model)({ ...config, hidden: 65536, nHeads: 512, vocab: 2 ** 31 - 1 }, "cpu", 1),
      (e: any) => e.code === "CX_OUT_OF_MEMORY" && /cannot allocate \d+ MB for parameters on cpu; the model does not fit/.test(e.message),
    );
    // Without a GPU (as in CI) --device cuda says why, whether or not the addon was built with CUDA.
    let gpu: ReturnType<typeof model> | undefined;
    try {
      gpu = new (loadAddon().Model)(config, "cuda", 1);
    } catch (e: any) {
      assert.equal(e.code, "CX_BACKEND_UNAVAILABLE");
      assert.match(e.message, loadAddon().cudaCompiled ? /no usable CUDA driver or device|no CUDA device is visible/ : /built without CUDA/);
    }
    gpu?.dispose();
    m.dispose();
  });
});
