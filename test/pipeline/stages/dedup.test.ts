/** dedup: exact, across sources, first occurrence in recipe order kept, under each normalisation. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { dedup } from "../../../src/pipeline/stages/dedup.ts";
import { createIngestTables, DOCUMENTS, uniqueDocTexts } from "../../../src/pipeline/schema.ts";
import { parseRecipe } from "../../../src/recipe/load.ts";
import { BuildDb } from "../../../src/util/duckdb.ts";

/** documents rows: [source, file, row, text, skip reason] */
type Row = [number, number, number, string | null, string | null];

async function dbWith(rows: Row[]): Promise<BuildDb> {
  const db = await BuildDb.open(":memory:");
  await createIngestTables(db);
  for (const [s, f, r, text, reason] of rows) await db.run(`INSERT INTO ${DOCUMENTS} VALUES (?, ?, ?, ?, ?)`, [s, f, r, text, reason]);
  return db;
}

function recipe(dedupYaml: string) {
  return parseRecipe(`name: t\n${dedupYaml}\nsources:\n  - {name: a, weight: 1, local: {files: [a.jsonl]}}\n  - {name: b, weight: 1, local: {files: [b.jsonl]}}\n`, "t.yaml");
}

// Inserted out of recipe order on purpose: the winner is decided by (source, file, row), not by insertion.
const ROWS: Row[] = [
  [1, 0, 0, "Hello world", null], // a duplicate of source 0's row 2
  [0, 0, 2, "Hello world", null],
  [0, 0, 0, "  Hello world\n", null], // the same after trimming: it comes first, so it is kept under nfc_trim
  [0, 1, 0, "hello   WORLD", null], // equal only once lower-cased and whitespace-collapsed
  [0, 0, 1, "other", null],
  [1, 0, 1, null, "empty_text"], // skipped rows take no part
  [1, 0, 2, "caf\u0065\u0301", null], // "café" decomposed: NFC makes it equal to the next
  [1, 1, 0, "caf\u00e9", null],
];

async function kept(db: BuildDb) {
  return db.rows<{ ord: bigint; source_idx: number; file_idx: number; row_idx: bigint }>(`SELECT ord, source_idx, file_idx, row_idx FROM unique_docs ORDER BY ord`);
}

describe("dedup", () => {
  it("keeps the first occurrence in recipe order (source, file, row) after NFC and trimming, and records who kept each duplicate", async () => {
    const db = await dbWith(ROWS);
    try {
      const r = await dedup(db, recipe("dedup: {enabled: true, normalization: nfc_trim}"));
      // The kept text's bytes per source: "  Hello world\n", "other", "hello   WORLD"; the decomposed "café".
      assert.deepEqual(r, { kept: 4, removed: 3, keptBySource: new Map([[0, { documents: 3, bytes: 14 + 5 + 13 }], [1, { documents: 1, bytes: 6 }]]) });
      assert.deepEqual(
        (await kept(db)).map((k) => [Number(k.ord), k.source_idx, k.file_idx, Number(k.row_idx)]),
        [[0, 0, 0, 0], [1, 0, 0, 1], [2, 0, 1, 0], [3, 1, 0, 2]],
      );
      const dups = await db.rows<{ source_idx: number; file_idx: number; row_idx: bigint; kept_by_source: number }>(
        `SELECT * FROM duplicates ORDER BY source_idx, file_idx, row_idx`,
      );
      assert.deepEqual(dups.map((d) => [d.source_idx, d.file_idx, Number(d.row_idx), d.kept_by_source]), [[0, 0, 2, 0], [1, 0, 0, 0], [1, 1, 0, 1]]);
      // Kept documents point at their own text (not the normalised key), which is not copied.
      assert.deepEqual(await uniqueDocTexts(db, 0, 1), ["  Hello world\n"]);
    } finally {
      db.close();
    }
  });

  it("lower-cases and collapses whitespace under the second normalisation", async () => {
    const db = await dbWith(ROWS);
    try {
      const { kept, removed } = await dedup(db, recipe("dedup: {enabled: true, normalization: nfc_trim_lower_collapse_whitespace}"));
      assert.deepEqual({ kept, removed }, { kept: 3, removed: 4 });
    } finally {
      db.close();
    }
  });

  it("keeps every document when disabled", async () => {
    const db = await dbWith(ROWS);
    try {
      const r = await dedup(db, recipe("dedup: {enabled: false}"));
      assert.deepEqual({ kept: r.kept, removed: r.removed }, { kept: 7, removed: 0 });
      assert.deepEqual((await kept(db)).map((k) => Number(k.ord)), [0, 1, 2, 3, 4, 5, 6]);
    } finally {
      db.close();
    }
  });
});
