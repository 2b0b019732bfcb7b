import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { inOrder } from "../../src/util/in-order.ts";

describe("inOrder", () => {
  it("consumes every result in order, with at most `ahead` started beyond the one consumed", async () => {
    for (const ahead of [0, 1, 3]) {
      const consumed: number[] = [];
      let running = 0;
      let most = 0;
      await inOrder(
        10,
        ahead,
        async (k) => {
          running++;
          most = Math.max(most, running);
          // Later batches finish first: the order must come from inOrder, not from the timing.
          await new Promise((r) => setTimeout(r, 10 - k));
          running--;
          return k * k;
        },
        (v, k) => {
          assert.equal(v, k * k);
          consumed.push(k);
        },
      );
      assert.deepEqual(consumed, [...Array(10).keys()]);
      assert.ok(most <= Math.max(1, ahead), `ahead ${ahead}: ${most} produced at once`);
      if (ahead === 3) assert.ok(most > 1, "nothing overlapped");
    }
  });

  it("throws the first failure once, with none left unhandled", async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => unhandled.push(e);
    process.on("unhandledRejection", onUnhandled);
    try {
      await assert.rejects(
        inOrder(5, 2, async (k) => (k >= 1 ? Promise.reject(new Error(`produce ${k}`)) : k), () => undefined),
        /produce 1/,
      );
      await assert.rejects(
        inOrder(5, 2, async (k) => k, (_, k) => {
          if (k === 0) throw new Error("consume 0");
        }),
        /consume 0/,
      );
      await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(unhandled, []);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });
});
