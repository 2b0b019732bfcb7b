import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { loadAddon, TensorKind } from "../../src/native/addon.ts";

const config = { nLayers: 1, hidden: 8, nHeads: 2, ffn: 16, vocab: 32, maxSeq: 8, ropeTheta: 10000, normEps: 1e-5 };

/** One AdamW step with zero gradients: only the decoupled weight decay moves a weight, by lr · wd · w. */
async function stepWithZeroGradients(decayEmbeddings: 0 | 1) {
  const model = new (loadAddon().Model)(config, "cpu", 1);
  try {
    model.init(7);
    model.zeroGrad();
    const names = model.tensors().map((t) => t.name);
    const before = names.map((_, i) => model.getTensor(TensorKind.param, i));
    await model.clipAdamwStep({ lr: 0.1, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.5, step: 1, decayEmbeddings }, 0);
    const after = names.map((_, i) => model.getTensor(TensorKind.param, i));
    return { names, moved: names.map((_, i) => before[i]!.some((v, j) => v !== after[i]![j])), before, after };
  } finally {
    model.dispose();
  }
}

describe("which tensors weight decay applies to", () => {
  it("decays the projection and LM-head matrices, never the norms, and the embedding only with decayEmbeddings", async () => {
    for (const flag of [0, 1] as const) {
      const { names, moved, before, after } = await stepWithZeroGradients(flag);
      for (const [i, name] of names.entries()) {
        const expected = /norm/.test(name) ? false : name === "model.embed_tokens.weight" ? flag === 1 : true;
        assert.equal(moved[i], expected, `${name} with decayEmbeddings ${flag}`);
        if (expected) {
          const factor = 1 - Math.fround(0.1) * Math.fround(0.5);
          for (let j = 0; j < before[i]!.length; j += 7) assert.ok(Math.abs(after[i]![j]! - before[i]![j]! * factor) <= 1e-6 * Math.abs(before[i]![j]!), name);
        }
      }
    }
  });
});
