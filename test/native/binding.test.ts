import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { loadAddon, type AdamwOptions, type NativeModelConfig, type RunOptions, type Topology } from "../../src/native/addon.ts";

// Complete objects of each TypeScript declaration: `satisfies Required<…>` makes the compiler list every key, so
// these tests compare the declarations in src/native/addon.ts with what the binding reads.
const config = { nLayers: 1, hidden: 8, nHeads: 2, ffn: 16, vocab: 32, maxSeq: 8, ropeTheta: 10000, normEps: 1e-5 } satisfies Required<Omit<NativeModelConfig, "ropeScaling">>;
const scaling = { type: 2, factor: 4, originalMaxPositions: 8, lowFreqFactor: 1, highFreqFactor: 4, betaFast: 32, betaSlow: 1 } satisfies Required<NonNullable<NativeModelConfig["ropeScaling"]>>;
const run = { precision: 1, docMask: 1, resetPositions: 1, maskEosLoss: 1, eosId: 31, recompute: 0 } satisfies Required<RunOptions>;
const adamw = { lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step: 1, decayEmbeddings: 0 } satisfies Required<AdamwOptions>;

const without = <T extends object>(o: T, key: string) => Object.fromEntries(Object.entries(o).filter(([k]) => k !== key)) as T;

describe("the binding mirrors the C API structs exactly", () => {
  it("ModelConfig: every declared key is required, and an unknown key is refused", () => {
    const { Model } = loadAddon();
    new Model(config, "cpu", 1).dispose();
    for (const key of Object.keys(config)) assert.throws(() => new Model(without(config, key), "cpu", 1), new RegExp(`ModelConfig: missing key '${key}'`));
    assert.throws(() => new Model({ ...config, nLayer: 2 } as NativeModelConfig, "cpu", 1), /ModelConfig: unknown key 'nLayer'/);
    assert.throws(() => new Model({ ...config, hidden: "8" } as unknown as NativeModelConfig, "cpu", 1), /ModelConfig\.hidden must be a number/);
    // The RoPE scaling is optional; given, it carries every key of cx_rope_scaling.
    new Model({ ...config, ropeScaling: scaling }, "cpu", 1).dispose();
    for (const key of Object.keys(scaling)) {
      assert.throws(() => new Model({ ...config, ropeScaling: without(scaling, key) }, "cpu", 1), new RegExp(`ModelConfig\\.ropeScaling: missing key '${key}'`));
    }
    assert.throws(() => new Model({ ...config, ropeScaling: { ...scaling, type: 7 } }, "cpu", 1), /unknown RoPE scaling type 7/);
  });

  it("RunOptions and AdamW options: the same, on every method that takes them", async () => {
    const model = new (loadAddon().Model)(config, "cpu", 1);
    try {
      model.init(1);
      const tokens = Int32Array.from({ length: 8 }, (_, i) => i);
      await model.forwardLosses(tokens, 1, 8, run);
      for (const key of Object.keys(run)) assert.throws(() => model.forwardLosses(tokens, 1, 8, without(run, key)), new RegExp(`RunOptions: missing key '${key}'`));
      assert.throws(() => model.forwardBackward(tokens, 1, 8, { ...run, docMsk: 1 } as RunOptions, 1), /RunOptions: unknown key 'docMsk'/);
      model.zeroGrad();
      await model.clipAdamwStep(adamw, 1);
      for (const key of Object.keys(adamw)) assert.throws(() => model.clipAdamwStep(without(adamw, key), 1), new RegExp(`AdamW options: missing key '${key}'`));
      assert.throws(() => model.clipAdamwStep({ ...adamw, gradScale: 1 } as AdamwOptions, 1), /AdamW options: unknown key 'gradScale'/);
      await model.adamwStep({ ...adamw, gradScale: 1, step: 2 });
      assert.throws(() => model.adamwStep(adamw as AdamwOptions & { gradScale: number }), /AdamW options: missing key 'gradScale'/);
    } finally {
      model.dispose();
    }
  });
});

describe("the world's topology (cx_topology_make)", () => {
  it("answers every field of cx_topology, and refuses a ring that does not divide the world with the fix", () => {
    const addon = loadAddon();
    assert.deepEqual(addon.topology(4, 3, 2), { world: 4, rank: 3, ringSize: 2, ringIndex: 1, dataRank: 1, dataRanks: 2 } satisfies Required<Topology>);
    assert.deepEqual(addon.topology(1, 0, 1), { world: 1, rank: 0, ringSize: 1, ringIndex: 0, dataRank: 0, dataRanks: 1 });
    assert.throws(() => addon.topology(1, 0, 2), (e: Error & { code?: string }) => e.code === "CX_INVALID_ARGUMENT" && /use a divisor of 1/.test(e.message));
    assert.throws(() => addon.topology(2, 2, 1), /rank 2 is not in a world of 2/);
  });

  it("a target mask without a communicator is the whole rows'", () => {
    const tokens = Int32Array.from([5, 31, 5, 5, 5, 5, 31, 5]);
    assert.deepEqual(Array.from(loadAddon().targetMask(tokens, 2, 4, run)), [1, 0, 1, 0, 1, 1, 0, 0]);
  });
});
