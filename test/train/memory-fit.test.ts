/** The largest context a run could hold: per-token activation bytes against the memory left, in whole 1,024s. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CONTEXT_GRANULE, contextFit, largestContext } from "../../src/train/memory-fit.ts";

describe("memory fit", () => {
  it("rounds the longest fitting context down to a whole granule, per row of the micro-batch", () => {
    assert.equal(largestContext(1000, 1000 * 5 * CONTEXT_GRANULE, 1), 5 * CONTEXT_GRANULE);
    assert.equal(largestContext(1000, 1000 * 5 * CONTEXT_GRANULE - 1, 1), 4 * CONTEXT_GRANULE);
    assert.equal(largestContext(1000, 1000 * 5 * CONTEXT_GRANULE, 2), 2 * CONTEXT_GRANULE);
    assert.equal(largestContext(1000, 999, 1), 0);
    assert.equal(largestContext(0, 1e9, 1), 0);
  });

  it("counts this run's own activations as available, and shares the host among its ranks", () => {
    const perToken = { 0: 300, 1: 100 } as const;
    const model = {
      activationBytes: (tokens: number, _precision: 0 | 1, recompute: 0 | 1) => tokens * perToken[recompute],
      deviceMemory: () => null,
      memory: () => ({ states: 1, activations: 300 * 4096 }),
    };
    const fit = contextFit(model, { tokens: 4096, precision: 1, microBatch: 1, ranksOnHost: 2 }, () => 2 * 300 * 8192);
    assert.equal(fit.available_source, "host available memory");
    assert.equal(fit.activation_bytes_per_token, 300);
    assert.equal(fit.activation_bytes_per_token_recompute, 100);
    assert.equal(fit.available_bytes, 300 * (8192 + 4096));
    assert.equal(fit.largest_context, 12 * 1024);
    assert.equal(fit.largest_context_recompute, 36 * 1024);
    const onGpu = contextFit({ ...model, deviceMemory: () => ({ free: 300 * 1024, total: 1e12 }) }, { tokens: 4096, precision: 0, microBatch: 1, ranksOnHost: 8 }, () => 0);
    assert.equal(onGpu.available_source, "GPU free memory");
    assert.equal(onGpu.largest_context, 5 * 1024);
  });
});
