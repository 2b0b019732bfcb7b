/** Release naming: checkpoint branches as OLMo and Pythia name them. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { commitBatches } from "../../src/publish/publish.ts";
import { bytesEntry, checkpointBranch, tokensLabel } from "../../src/publish/release.ts";

describe("release names", () => {
  it("label tokens in the largest unit that leaves at least 1", () => {
    assert.equal(tokensLabel(256), "256");
    assert.equal(tokensLabel(1536), "2K");
    assert.equal(tokensLabel(41_943_040_000), "42B");
    assert.equal(tokensLabel(2.3e12), "2T");
  });
  it("name a checkpoint's branch by its step and tokens", () => {
    assert.equal(checkpointBranch(10_000, 41_943_040_000), "step-0010000-tokens-42B");
  });
  it("split a release into commits within the file and byte limits, keeping the order", () => {
    const files = [10, 10, 10, 50, 5, 5, 5].map((n, i) => bytesEntry(`f${i}`, "x".repeat(n)));
    const parts = commitBatches(files, 3, 30);
    assert.deepEqual(parts.map((p) => p.map((f) => f.path)), [["f0", "f1", "f2"], ["f3"], ["f4", "f5", "f6"]]);
  });
});
