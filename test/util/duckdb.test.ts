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

  it("appends typed columns as their bytes, beside plain ones, across vectors", async () => {
    const db = await BuildDb.open(":memory:");
    try {
      const n = 2048 * 2 + 5;
      const u = Uint32Array.from({ length: n }, (_, k) => 4294967295 - k);
      const i = Int32Array.from({ length: n }, (_, k) => (k % 2 ? -2147483648 + k : 2147483647 - k));
      const b = BigInt64Array.from({ length: n }, (_, k) => (k % 3 ? -(2n ** 63n) + BigInt(k) : 2n ** 63n - 1n - BigInt(k)));
      const d = Float64Array.from({ length: n }, (_, k) => k / 7 - 100);
      const plain = Array.from({ length: n }, (_, k) => k);
      const out = await db.appender("typed_in", [["u", "UINTEGER"], ["i", "INTEGER"], ["b", "BIGINT"], ["d", "DOUBLE"], ["p", "BIGINT"]]);
      out.appendColumns([u, i, b, d, plain]);
      out.close();
      const got = await db.rows<{ u: number; i: number; b: bigint; d: number; p: bigint }>(`SELECT u, i, b, d, p FROM typed_in`);
      assert.equal(got.length, n);
      for (let k = 0; k < n; k++) {
        const r = got[k]!;
        if (r.u !== u[k] || r.i !== i[k] || r.b !== b[k] || r.d !== d[k] || r.p !== BigInt(k)) assert.fail(`row ${k}: ${[r.u, r.i, r.b, r.d, r.p].map(String)}`);
      }
      const wrong = await db.appender("wrong_in", [["i", "INTEGER"], ["b", "BIGINT"]]);
      assert.throws(() => wrong.appendColumns([new Float64Array(2), new BigInt64Array(2)]), /column 0 is a Float64Array, not the Int32Array \(or plain numbers\) that INTEGER takes/);
      assert.throws(() => wrong.appendColumns([new Int32Array(2), new BigInt64Array(3)]), /column 1 has 3 rows, column 0 has 2/);
      wrong.close();
    } finally {
      db.close();
    }
  });
});
