/** Sizes for --memory, and the DuckDB budget they become. */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { BuildDb } from "../../src/util/duckdb.ts";
import { parseSize } from "../../src/util/size.ts";

describe("sizes", () => {
  it("read decimal and binary units, bytes and a share of memory", () => {
    assert.equal(parseSize("4GB"), 4e9);
    assert.equal(parseSize("512MiB"), 512 * 2 ** 20);
    assert.equal(parseSize("1.5g"), 1.5e9);
    assert.equal(parseSize("2048"), 2048);
    assert.equal(parseSize("25%", 8e9), 2e9);
    for (const bad of ["lots", "4 parsecs", "0%", "150%", "-1GB"]) assert.equal(parseSize(bad), undefined, bad);
  });

  it("become DuckDB's memory limit and spill folder", async () => {
    const dir = await mkdtemp(join(tmpdir(), "chuxin-size-"));
    const db = await BuildDb.open(join(dir, "x.duckdb"), 1, { memoryBytes: 64 * 2 ** 20, tempDirectory: join(dir, "spill") });
    try {
      const r = await db.one<{ limit: string; temp: string }>(`SELECT current_setting('memory_limit') AS "limit", current_setting('temp_directory') AS temp`);
      assert.match(r.limit, /^6[47](\.\d+)? ?(MiB|MB)$/);
      assert.equal(r.temp, join(dir, "spill"));
    } finally {
      db.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
