import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { loadAddon, type RunOptions } from "../../src/native/addon.ts";
import { defaultLengths, parseDepths, parseLengths } from "../../src/eval/needle-run.ts";
import { needleNumber, needlePrompt, prefill, scoreAnswer } from "../../src/eval/needle.ts";

describe("needle in a haystack", () => {
  it("puts the needle at each depth of a hand-made haystack, where it should be, and cuts the prompt to the length", () => {
    const haystack = Array.from({ length: 500 }, (_, i) => 1000 + i);
    const needle = [1, 2, 3];
    const question = [7, 8];
    for (const [depth, at] of [[0, 0], [0.25, 24], [0.5, 48], [0.75, 71], [1, 95]] as const) {
      const { ids, needleAt } = needlePrompt(haystack, needle, question, 100, depth);
      assert.equal(ids.length, 100);
      assert.equal(needleAt, at, `depth ${depth}`);
      assert.deepEqual(ids.slice(needleAt, needleAt + 3), needle);
      // The haystack runs on around the needle, in order, and the question ends the prompt.
      assert.deepEqual([...ids.slice(0, needleAt), ...ids.slice(needleAt + 3, 98)], haystack.slice(0, 95));
      assert.deepEqual(ids.slice(98), question);
    }
    assert.throws(() => needlePrompt(haystack.slice(0, 50), needle, question, 100, 0.5), /the haystack has 50 tokens; length 100 needs 95/);
    assert.throws(() => needlePrompt(haystack, needle, question, 4, 0.5), /shorter than the needle and question/);
  });

  it("scores exact matches of the number, and seeds each cell's number", () => {
    assert.ok(scoreAnswer(" 4821337.", "4821337"));
    assert.ok(scoreAnswer("4821337 is the number", "4821337"));
    assert.ok(!scoreAnswer("48213370", "4821337"), "a longer number is not the number");
    assert.ok(!scoreAnswer("482133", "4821337"));
    assert.ok(!scoreAnswer("the number is 1234567, not 4821337", "4821337"), "the first number counts");
    assert.ok(!scoreAnswer("", "4821337"));
    assert.equal(needleNumber(0, 1024, 0.5), needleNumber(0, 1024, 0.5));
    const numbers = new Set([1024, 2048].flatMap((l) => [0, 0.5, 1].map((d) => needleNumber(3, l, d))));
    assert.equal(numbers.size, 6);
    for (const n of numbers) assert.match(n, /^[1-9]\d{6}$/);
  });

  it("reads lengths (1K = 1,024) and depths, refusing what is not one", () => {
    assert.deepEqual(parseLengths("1K,2k,4096,1M"), [1024, 2048, 4096, 1 << 20]);
    assert.throws(() => parseLengths("1K,two"), /'two' is not a length in tokens/);
    assert.deepEqual(parseDepths("0,0.5,1"), [0, 0.5, 1]);
    assert.throws(() => parseDepths("0,1.5"), /'1\.5' is not a depth between 0 and 1/);
    assert.deepEqual(defaultLengths(4096), [1024, 2048]);
    assert.deepEqual(defaultLengths(256), [244]);
  });

  it("prefills in chunks to the logits of one pass over the whole prompt", async () => {
    const model = new (loadAddon().Model)({ nLayers: 2, hidden: 64, nHeads: 4, ffn: 96, vocab: 300, maxSeq: 512, ropeTheta: 10000, normEps: 1e-5 }, "cpu", 2);
    try {
      model.init(5);
      const run: RunOptions = { precision: 1, docMask: 1, resetPositions: 1, maskEosLoss: 1, eosId: 299, recompute: 0 };
      const ids = Array.from({ length: 300 }, (_, i) => (i * 37) % 290);
      model.decodeReset(301);
      const whole = await prefill(model, ids, run, 1024);
      model.decodeReset(301);
      const chunked = await prefill(model, ids, run, 64);
      let worst = 0;
      for (let v = 0; v < whole.length; v++) worst = Math.max(worst, Math.abs(whole[v]! - chunked[v]!));
      assert.ok(worst < 1e-4, `chunked prefill differs by ${worst}`);
    } finally {
      model.dispose();
    }
  });
});
