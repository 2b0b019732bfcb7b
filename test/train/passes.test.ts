/** The trainer's step: the gradient of one optimizer step does not depend on how its windows are split into micro-batches. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { loadAddon, nativeModelConfig, TensorKind, type NativeModel } from "../../src/native/addon.ts";
import { readManifest } from "../../src/shards/manifest-file.ts";
import { TokenData } from "../../src/train/data.ts";
import { PRESETS } from "../../src/train/model-config.ts";
import { accumulateGradients } from "../../src/train/passes.ts";
import { runOptionsOf } from "../../src/train/trainer.ts";
import { useSampleBuild } from "../helpers/sample-build.ts";

const CONTEXT = 128;

function gradients(model: NativeModel): Float32Array[] {
  return model.tensors().map((_, i) => model.getTensor(TensorKind.grad, i));
}

describe("trainer step (accumulateGradients)", () => {
  const fixture = useSampleBuild("chuxin-trainer-step-");

  it("gives the same mean loss and gradients for 4 windows as 1 micro-batch of 4, 2 of 2 and 4 of 1 (fp32, CPU)", async () => {
    const manifest = await readManifest(fixture.data);
    const config = { ...PRESETS.tiny!, maxSeq: CONTEXT };
    const data = await TokenData.open(fixture.data, { context: CONTEXT, seed: 3, evalWindows: 0, modelContext: CONTEXT, modelVocab: config.vocab });
    const opts = runOptionsOf({ precision: "fp32", doc_mask: true, reset_positions: true, mask_eos_loss: true }, manifest.tokenizer.eos_id);
    const model = new (loadAddon().Model)(nativeModelConfig(config), "cpu", 2);
    try {
      model.init(7);
      const runs = [];
      for (const [microBatches, microBatch] of [[1, 4], [2, 2], [4, 1]] as const) {
        const r = await accumulateGradients(model, data, { first: 5, microBatches, microBatch, opts, vocab: config.vocab, label: "test" });
        runs.push({ ...r, grads: gradients(model) });
      }
      const [whole, ...split] = runs;
      assert.ok(whole!.targets > 0 && Number.isFinite(whole!.loss));
      for (const r of split) {
        assert.equal(r.targets, whole!.targets);
        // Sums in another order: equal to fp32 rounding, not bit for bit.
        assert.ok(Math.abs(r.loss - whole!.loss) <= 1e-6 * whole!.loss, `loss ${r.loss} vs ${whole!.loss}`);
        let worst = 0;
        r.grads.forEach((g, t) => {
          const ref = whole!.grads[t]!;
          let num = 0;
          let den = 0;
          for (let i = 0; i < g.length; i++) {
            num = Math.max(num, Math.abs(g[i]! - ref[i]!));
            den = Math.max(den, Math.abs(ref[i]!));
          }
          worst = Math.max(worst, num / Math.max(den, 1e-30));
        });
        assert.ok(worst < 1e-5, `largest relative gradient difference ${worst}`);
      }
      // Another start in the stream is another batch.
      const other = await accumulateGradients(model, data, { first: 9, microBatches: 1, microBatch: 4, opts, vocab: config.vocab, label: "test" });
      assert.notEqual(other.loss, whole!.loss);
    } finally {
      model.dispose();
      await data.close();
    }
  });
});
