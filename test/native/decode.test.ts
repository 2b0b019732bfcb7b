/** Generation's key/value cache through the binding: each step's logits equal the full forward pass's. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { loadAddon, type RunOptions } from "../../src/native/addon.ts";

describe("decoding with a key/value cache", () => {
  it("matches the full forward pass at every step, and refuses to run past its capacity", async () => {
    const model = new (loadAddon().Model)({ nLayers: 2, hidden: 64, nHeads: 4, ffn: 160, vocab: 400, maxSeq: 64, ropeTheta: 10000, normEps: 1e-5 }, "cpu", 2);
    try {
      model.init(5);
      const run: RunOptions = { precision: 1, docMask: 0, resetPositions: 0, maskEosLoss: 0, eosId: 399, recompute: 0 };
      const tokens = Array.from({ length: 30 }, (_, i) => (i * 53 + 7) % 399);
      model.decodeReset(30);
      let worst = 0;
      for (let end = 20; end <= 30; end++) {
        const got = await model.decodeStep(Int32Array.from(tokens.slice(end === 20 ? 0 : end - 1, end)), run);
        const want = await model.lastLogits(Int32Array.from(tokens.slice(0, end)), 1, end, run);
        for (let v = 0; v < 400; v++) worst = Math.max(worst, Math.abs(got[v]! - want[v]!));
      }
      assert.ok(worst < 1e-4, `largest difference ${worst}`);
      await assert.rejects(model.decodeStep(Int32Array.of(1), run), /more than the 30/);
      model.decodeReset(8);
      await assert.rejects(model.decodeStep(Int32Array.from(tokens.slice(0, 9)), run), /more than the 8/);
    } finally {
      model.dispose();
    }
  });
});
