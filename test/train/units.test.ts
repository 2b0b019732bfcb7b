import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { countTargets, maskedLossSum, targetMask } from "../../src/train/data.ts";
import { sampleToken } from "../../src/eval/generate.ts";
import { hfConfig, parameterCount, PRESETS, resolveModelConfig } from "../../src/train/model-config.ts";
import { encodeSafetensors, readSafetensors } from "../../src/train/safetensors.ts";
import { learningRate } from "../../src/train/schedule.ts";

describe("trainer pieces", () => {
  it("warms up linearly, then decays by cosine to the minimum", () => {
    const o = { lr: 1e-3, minLr: 1e-4, warmupSteps: 10, decaySteps: 110 };
    assert.equal(learningRate(5, o), 5e-4);
    assert.equal(learningRate(10, o), 1e-3);
    assert.ok(Math.abs(learningRate(60, o) - 5.5e-4) < 1e-12, "halfway is the midpoint");
    assert.equal(learningRate(110, o), 1e-4);
    assert.equal(learningRate(500, o), 1e-4);
  });

  it("warmup-stable-decay: the peak until the last decay fraction, then 1-sqrt, linear or cosine down to the minimum", () => {
    const o = { lr: 1e-3, minLr: 1e-4, warmupSteps: 2, decaySteps: 10, kind: "wsd" as const, decayFraction: 0.3 };
    // The decay takes round(0.3 × 10) = 3 steps: 8, 9, 10 at progress 1/3, 2/3, 1.
    const peak = [5e-4, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3];
    const expected = {
      "1-sqrt": [...peak, 1e-4 + 9e-4 * (1 - Math.sqrt(1 / 3)), 1e-4 + 9e-4 * (1 - Math.sqrt(2 / 3)), 1e-4, 1e-4],
      linear: [...peak, 1e-4 + 9e-4 * (2 / 3), 1e-4 + 9e-4 * (1 / 3), 1e-4, 1e-4],
      cosine: [...peak, 1e-4 + 9e-4 * 0.75, 1e-4 + 9e-4 * 0.25, 1e-4, 1e-4],
    };
    for (const [shape, want] of Object.entries(expected)) {
      const got = want.map((_, i) => learningRate(i + 1, { ...o, decayShape: shape as "1-sqrt" | "linear" | "cosine" }));
      got.forEach((v, i) => assert.ok(Math.abs(v - want[i]!) < 1e-15, `${shape} step ${i + 1}: ${v} vs ${want[i]}`));
    }
    assert.equal(learningRate(7, { ...o, decayShape: "linear" }), 1e-3, "stable until the decay starts");
  });

  it("linear and constant schedules", () => {
    const o = { lr: 1e-3, minLr: 1e-4, warmupSteps: 0, decaySteps: 10 };
    assert.ok(Math.abs(learningRate(5, { ...o, kind: "linear" }) - (1e-4 + 9e-4 * 0.5)) < 1e-15);
    assert.equal(learningRate(10, { ...o, kind: "linear" }), 1e-4);
    assert.equal(learningRate(50, { ...o, kind: "constant" }), 1e-3);
  });

  it("writes safetensors that read back, with 8-byte-aligned data", async () => {
    const dir = await mkdtemp(join(tmpdir(), "chuxin-st-"));
    const bytes = encodeSafetensors([
      { name: "a.weight", shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, -6.5]) },
      { name: "b.weight", shape: [1], data: Float32Array.from([Math.PI]) },
    ]);
    assert.equal((8 + Number(bytes.readBigUInt64LE(0))) % 8, 0);
    await writeFile(join(dir, "m.safetensors"), bytes);
    const back = await readSafetensors(join(dir, "m.safetensors"));
    assert.deepEqual(Array.from(back.get("a.weight")!.data), [1, 2, 3, 4, 5, -6.5]);
    assert.deepEqual(back.get("b.weight")!.shape, [1]);
    assert.equal(back.get("b.weight")!.data[0], Math.fround(Math.PI));
    await rm(dir, { recursive: true, force: true });
  });

  it("masks the last position and (optionally) EOS inputs, and keeps NaN losses visible", () => {
    const tokens = Int32Array.from([5, 7, 9, 2, 4, 9]);
    const opts = { precision: 1 as const, docMask: 1 as const, resetPositions: 1 as const, maskEosLoss: 1 as const, eosId: 9, recompute: 0 as const };
    assert.deepEqual(Array.from(targetMask(tokens, 2, 3, opts)), [1, 1, 0, 1, 1, 0]);
    assert.equal(countTargets(tokens, 1, 6, opts), 4);
    assert.equal(countTargets(tokens, 1, 6, { ...opts, maskEosLoss: 0 }), 5);
    const r = maskedLossSum(Float32Array.from([1, NaN, 3]), Uint8Array.from([1, 1, 0]));
    assert.ok(Number.isNaN(r.sum));
  });

  it("samples greedily at temperature 0 and only within the top-p mass", () => {
    const logits = Float32Array.from([0, 5, 1, 4.9]);
    assert.equal(sampleToken(logits, 0, 1, Math.random), 1);
    const picks = new Set(Array.from({ length: 200 }, (_, i) => sampleToken(logits, 1, 0.9, () => (i + 0.5) / 200)));
    assert.deepEqual([...picks].sort(), [1, 3]);
  });

  it("reads presets and Hugging Face configs, and writes a config transformers loads", async () => {
    const hf = hfConfig(PRESETS["chuxin-1.6b"]!, 100001, 100000);
    assert.equal(hf.num_hidden_layers, 24);
    assert.equal(hf.intermediate_size, 5632);
    const dir = await mkdtemp(join(tmpdir(), "chuxin-cfg-"));
    await writeFile(join(dir, "config.json"), JSON.stringify(hf));
    const back = await resolveModelConfig(join(dir, "config.json"));
    assert.deepEqual(back.config, PRESETS["chuxin-1.6b"]);
    assert.ok(Math.abs(parameterCount(back.config) - 1.6e9) < 0.2e9, `${parameterCount(back.config)} parameters`);
    await writeFile(join(dir, "gqa.json"), JSON.stringify({ ...hf, num_key_value_heads: 4 }));
    await assert.rejects(resolveModelConfig(join(dir, "gqa.json")), /grouped-query attention .* is not supported/);
    // A model file in our own keys: a misspelt key is named, not passed on to the addon.
    await writeFile(join(dir, "ours.json"), JSON.stringify({ nLayers: 2, hidden: 64, nHead: 4, ffn: 172 }));
    await assert.rejects(resolveModelConfig(join(dir, "ours.json")), /ours\.json: unknown key 'nHead' — did you mean 'nHeads'\?/);
    await rm(dir, { recursive: true, force: true });
  });
});
