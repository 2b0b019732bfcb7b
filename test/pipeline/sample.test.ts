import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { apportion, interleave, planMixture, radixOrder, type SourceDocs } from "../../src/pipeline/sample.ts";

function source(name: string, weight: number, lengths: number[], maxEpochs = 4, hashes = lengths.map((_, i) => `${name}-${i}`)): SourceDocs & { hashes: string[] } {
  return { name, weight, maxEpochs, ords: lengths.map((_, i) => i), hashes, hashOf: (i) => hashes[i]!, tokens: lengths };
}

function seeded(n: number, seed: number): number[] {
  let x = seed;
  return Array.from({ length: n }, () => ((x = (x * 1103515245 + 12345) % 2 ** 31), 20 + (x % 400)));
}

describe("mixture planning", () => {
  it("apportions by largest remainder, ties to the earlier source", () => {
    assert.deepEqual(apportion(10, [1, 1, 1]), [4, 3, 3]);
    assert.deepEqual(apportion(100, [0.7, 0.3]), [70, 30]);
    assert.equal(apportion(12345, [0.2, 0.3, 0.5]).reduce((a, b) => a + b), 12345);
  });

  it("hits each target within one document, repeating scarce sources in whole passes plus a part", () => {
    const a = source("a", 0.5, seeded(300, 1));
    const b = source("b", 0.5, seeded(40, 2));
    const plans = planMixture([a, b], 7, 40000);
    const maxDoc = 420;
    for (const p of plans) assert.ok(Math.abs(p.tokensSelected - p.targetTokens) <= maxDoc / 2, `${p.name}: ${p.tokensSelected} vs ${p.targetTokens}`);
    const pb = plans[1]!;
    assert.ok(pb.epochs > 1 && pb.epochs <= 4);
    const fullPasses = Math.floor(pb.targetTokens / pb.tokensAvailable);
    for (let pass = 0; pass < fullPasses; pass++) assert.equal(pb.picks.toArray().filter((p) => p.pass === pass).length, 40, `pass ${pass} is whole`);
  });

  it("orders documents by a keyed hash of (seed, source, document), not input order", () => {
    const lengths = seeded(50, 3);
    const forward = planMixture([source("a", 1, lengths)], 1, 3000)[0]!;
    const reversed = source("a", 1, [...lengths].reverse(), 4, lengths.map((_, i) => `a-${i}`).reverse());
    const backward = planMixture([reversed], 1, 3000)[0]!;
    assert.deepEqual(
      forward.picks.toArray().map((p) => `a-${p.ord}`),
      backward.picks.toArray().map((p) => reversed.hashes[p.ord]),
    );
    const otherSeed = planMixture([source("a", 1, lengths)], 2, 3000)[0]!;
    assert.notDeepEqual(forward.picks.toArray().map((p) => p.ord), otherSeed.picks.toArray().map((p) => p.ord));
  });

  it("refuses a target that needs more than max_epochs, naming the source and the epochs", () => {
    assert.throws(() => planMixture([source("big", 0.5, seeded(100, 4)), source("tiny", 0.5, [100, 100])], 1, 10000), /source 'tiny'.*needs 25\.00 epochs, over max_epochs 4/);
  });

  it("without target_tokens, takes the most no source must repeat beyond max_epochs to fill", () => {
    const plans = planMixture([source("a", 0.5, Array(100).fill(100)), source("b", 0.5, Array(10).fill(100))], 1, undefined);
    assert.equal(plans[1]!.epochs, 4);
    assert.equal(plans[0]!.tokensSelected, 4000);
  });

  it("interleaves so that every prefix stays close to the target mixture", () => {
    const plans = planMixture([source("a", 0.6, Array(500).fill(10)), source("b", 0.3, Array(500).fill(10)), source("c", 0.1, Array(500).fill(10))], 1, 3000);
    const order = interleave(plans);
    const seen = [0, 0, 0];
    for (let k = 0; k < order.length / 2; k++) {
      seen[order[2 * k]!]!++;
      const n = k + 1;
      [0.6, 0.3, 0.1].forEach((share, i) => assert.ok(Math.abs(seen[i]! - share * n) <= 1, `prefix ${n}, source ${i}`));
    }
  });
});

describe("pass order", () => {
  it("orders by the 64-bit key, equal keys by index, as a comparison sort does", () => {
    // Keys drawn from a few values per word, so every digit position has ties and carries.
    let x = 7;
    const rand = () => (x = (Math.imul(x, 1103515245) + 12345) >>> 0);
    const n = 5000;
    const words = [0, 1, 0xffff, 0x10000, 0xffffffff, 0x80000000];
    const hi = Uint32Array.from({ length: n }, () => words[rand() % words.length]!);
    const lo = Uint32Array.from({ length: n }, () => words[rand() % words.length]! ^ (rand() % 3));
    const key = (i: number) => (BigInt(hi[i]!) << 32n) | BigInt(lo[i]!);
    const expected = Array.from({ length: n }, (_, i) => i).sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : a - b));
    assert.deepEqual(Array.from(radixOrder(hi, lo)), expected);
    assert.deepEqual(Array.from(radixOrder(new Uint32Array(0), new Uint32Array(0))), []);
  });
});
