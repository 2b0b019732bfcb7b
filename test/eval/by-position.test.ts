import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { addToBuckets, bucketsOf, type BucketSums } from "../../src/eval/by-position.ts";

const EOS = 9;

describe("loss by position", () => {
  it("two documents in a window: each loss goes to its input's position in its own document (hand-computed)", () => {
    // Row 0: document A = 5 tokens ending in EOS (positions 0..4), then document B from position 0 (t = 5..9).
    // Row 1: one document running through the window (positions 0..9), the tail of one that began before it.
    const tokens = Int32Array.from([1, 2, 3, 4, EOS, 5, 6, 7, 8, 3, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4]);
    const losses = Float32Array.from({ length: 20 }, (_, i) => i + 1); // loss at index i is i + 1
    // No target at EOS inputs (mask_eos_loss) and at each row's last position.
    const mask = Uint8Array.from(tokens, (id, i) => (id === EOS || i % 10 === 9 ? 0 : 1));
    const sums: BucketSums = new Map();
    addToBuckets(sums, { tokens, losses, mask, B: 2, T: 10, eosId: EOS, documentMask: true, bucket: 4 });
    // Bucket 0 (positions 0–3): row 0 t=0..3 (losses 1..4) and t=5..8 (6..9); row 1 t=0..3 (11..14).
    // Bucket 1 (4–7): row 0 none (t=4 is EOS; B's positions end at 3); row 1 t=4..7 (15..18).
    // Bucket 2 (8–11): row 1 t=8 (19); t=9 has no target.
    assert.deepEqual(bucketsOf(sums, 4).map((b) => [b.from, b.to, b.tokens, b.loss]), [
      [0, 3, 12, (1 + 2 + 3 + 4 + 6 + 7 + 8 + 9 + 11 + 12 + 13 + 14) / 12],
      [4, 7, 4, (15 + 16 + 17 + 18) / 4],
      [8, 11, 1, 19],
    ]);
  });

  it("without the document mask, positions run over the window", () => {
    const tokens = Int32Array.from([1, EOS, 2, 3]);
    const sums: BucketSums = new Map();
    addToBuckets(sums, { tokens, losses: Float32Array.from([1, 2, 3, 4]), mask: Uint8Array.from([1, 1, 1, 0]), B: 1, T: 4, eosId: EOS, documentMask: false, bucket: 2 });
    assert.deepEqual(bucketsOf(sums, 2).map((b) => [b.from, b.tokens, b.loss]), [[0, 2, 1.5], [2, 1, 3]]);
  });
});
