/** Scoring: the harness's token boundaries, and batched, shared scoring equal to one request at a time. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { encodePair, scoreRequests } from "../../src/eval/loglikelihood.ts";
import { combine, mcRowMetrics, meanWithStderr } from "../../src/eval/metrics.ts";
import { loadAddon, type RunOptions } from "../../src/native/addon.ts";

// A byte tokenizer: enough to see which characters land in context and continuation.
const bytes = { encode: (s: string) => [...Buffer.from(s, "utf8")] };

describe("log-likelihood scoring", () => {
  it("moves the context's trailing whitespace into the continuation; an empty context is BOS", () => {
    assert.deepEqual(encodePair(bytes, "Answer: ", "yes", 7), { context: [...Buffer.from("Answer:")], continuation: [...Buffer.from(" yes")] });
    assert.deepEqual(encodePair(bytes, "", "yes", 7), { context: [7], continuation: [...Buffer.from("yes")] });
  });

  it("batched and shared scoring equals each request scored alone", async () => {
    const model = new (loadAddon().Model)({ nLayers: 2, hidden: 32, nHeads: 2, ffn: 64, vocab: 300, maxSeq: 64, ropeTheta: 10000, normEps: 1e-5 }, "cpu", 2);
    try {
      model.init(3);
      const run: RunOptions = { precision: 1, docMask: 0, resetPositions: 0, maskEosLoss: 0, eosId: 299, recompute: 0 };
      const requests = [
        { context: [1, 2, 3, 4], continuation: [5] },
        { context: [1, 2, 3, 4], continuation: [6] }, // same input as the first: one pass read twice
        { context: [9, 8], continuation: [7, 6, 5] },
        { context: Array.from({ length: 70 }, (_, i) => i + 1), continuation: [2, 3] }, // longer than the model: left-truncated
      ];
      const together = await scoreRequests(model, 300, requests, { maxLength: 64, batchTokens: 200, run, padId: 299 });
      for (const [i, r] of requests.entries()) {
        const whole = [...r.context, ...r.continuation].slice(-65);
        const input = whole.slice(0, -1);
        // forwardLosses scores position t's next token; the last target is read from logits at the end.
        const losses = await model.forwardLosses(Int32Array.from(input), 1, input.length, run);
        let expected = 0;
        const n = r.continuation.length;
        for (let k = 0; k < n - 1; k++) expected -= losses[input.length - n + k]!;
        const last = await model.lastLogits(Int32Array.from(input), 1, input.length, run);
        const mx = Math.max(...last);
        expected += last[r.continuation[n - 1]!]! - mx - Math.log(last.reduce((a, x) => a + Math.exp(x - mx), 0));
        assert.ok(Math.abs(together[i]!.logprob - expected) < 1e-4, `request ${i}: ${together[i]!.logprob} vs ${expected}`);
      }
      assert.equal(together[3]!.tokens, 64);
    } finally {
      model.dispose();
    }
  });

  it("acc, acc_norm (by characters of the choice), mean ± stderr, pooled subsets", () => {
    assert.deepEqual(mcRowMetrics([-4, -5], ["ab", "abcdef"], 1), { acc: 0, acc_norm: 1 });
    const m = meanWithStderr([1, 0, 1, 1]);
    assert.equal(m.value, 0.75);
    assert.ok(Math.abs(m.stderr - Math.sqrt(0.25 / 4)) < 1e-12);
    // The harness's pooled_sample_stderr: sqrt(Σ (n_i - 1)·se_i²·n_i / (Σ n_i - k) / Σ n_i).
    const a = meanWithStderr([1, 0, 1, 0]);
    const b = meanWithStderr([0, 1, 0, 1, 1, 0]);
    const c = combine([a, b], "weighted");
    assert.equal(c.value, 0.5);
    assert.ok(Math.abs(c.stderr - Math.sqrt((3 * a.stderr ** 2 * 4 + 5 * b.stderr ** 2 * 6) / 8 / 10)) < 1e-12);
    assert.equal(combine([a, meanWithStderr([1, 1])], "mean").value, 0.75);
  });
});
