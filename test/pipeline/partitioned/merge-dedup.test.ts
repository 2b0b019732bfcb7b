import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, it } from "node:test";
import { hashRange } from "../../../src/pipeline/partitioned/merge-dedup.ts";

describe("hashRange: N ranges of the document hash, one per partition's dedup job", () => {
  it("tiles the hash space with no gap or overlap, in order", () => {
    for (const n of [1, 2, 3, 7, 64, 1000]) {
      const ranges = Array.from({ length: n }, (_, h) => hashRange(h, n));
      assert.equal(ranges[0]!.lo, "00000000");
      assert.equal(ranges.at(-1)!.hi, null, `n=${n}: the last range runs to the end`);
      for (let h = 0; h + 1 < n; h++) {
        assert.equal(ranges[h]!.hi, ranges[h + 1]!.lo, `n=${n}: range ${h} ends where ${h + 1} begins`);
        assert.ok(ranges[h]!.lo < ranges[h]!.hi!, `n=${n}: range ${h} is not empty`);
      }
    }
  });

  it("puts every md5 hex digest in exactly one range, sharing them about evenly", () => {
    const n = 5;
    const ranges = Array.from({ length: n }, (_, h) => hashRange(h, n));
    const counts = new Array<number>(n).fill(0);
    const docs = 20000;
    for (let d = 0; d < docs; d++) {
      const hash = createHash("md5").update(`document ${d}`).digest("hex");
      const owners = ranges.filter((r) => hash >= r.lo && (r.hi === null || hash < r.hi));
      assert.equal(owners.length, 1, hash);
      counts[owners[0]!.index]!++;
    }
    for (const c of counts) assert.ok(Math.abs(c - docs / n) < 0.05 * (docs / n), `${counts.join(", ")}: within 5% of ${docs / n}`);
  });
});
