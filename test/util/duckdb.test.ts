import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BuildDb } from "../../src/util/duckdb.ts";

describe("BuildDb.appender: rows of numbers on a connection of their own", () => {
  it("keeps every row, in order, exactly, at each type's limits", async () => {
    const db = await BuildDb.open(":memory:");
    try {
      const out = await db.appender("rows_in", [["u", "UINTEGER"], ["i", "INTEGER"], ["b", "BIGINT"], ["d", "DOUBLE"]]);
      const n = 2048 * 2 + 17;
      const row = (k: number) => [4294967295 - k, k % 2 ? -k : 2147483647 - k, 2 ** 53 - 1 - k, k + 0.5];
      for (let k = 0; k < n; k++) out.append(row(k));
      out.close();
      const got = await db.rows<{ u: number; i: number; b: bigint; d: number }>(`SELECT u, i, b, d FROM rows_in`);
      assert.equal(got.length, n);
      for (let k = 0; k < n; k += 1) {
        const want = row(k);
        const r = got[k]!;
        if (r.u !== want[0] || r.i !== want[1] || r.b !== BigInt(want[2]!) || r.d !== want[3]) assert.fail(`row ${k}: ${JSON.stringify([r.u, r.i, String(r.b), r.d])} is not ${JSON.stringify(want)}`);
      }
      const empty = await db.appender("none_in", [["u", "UINTEGER"]]);
      empty.close();
      assert.equal((await db.one<{ n: bigint }>(`SELECT count(*) AS n FROM none_in`)).n, 0n);
    } finally {
      db.close();
    }
  });
});
