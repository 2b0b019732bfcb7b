/** ingest: every row of every file into `corpus.documents`, with provenance, through the reader of its format, then the text filters. */
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ingest } from "../../../src/pipeline/stages/ingest.ts";
import type { ProgressEvent } from "../../../src/pipeline/progress.ts";
import type { ResolvedSource } from "../../../src/pipeline/resolve.ts";
import { parseRecipe } from "../../../src/recipe/load.ts";
import { DOCUMENTS } from "../../../src/pipeline/schema.ts";
import { BuildDb, sqlString } from "../../../src/util/duckdb.ts";

describe("ingest", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "chuxin-ingest-"));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  it("reads parquet and JSON lines with (source, file, row) provenance, skip reasons for rows that are not documents, and the recipe's length filters", async () => {
    const db = await BuildDb.open(":memory:");
    try {
      // Source 0: a parquet file with a question/answer template (a NULL field makes the row null text).
      const qa = join(dir, "qa.parquet");
      await db.run(
        `COPY (SELECT * FROM (VALUES ('What is 2+2?', '4'), ('Name a prime', NULL), ('Hi', 'x')) t(q, a)) TO ${sqlString(qa)} (FORMAT parquet)`,
      );
      // Source 1: two JSON lines files; rows that are blank, malformed, not a string, blank text, too short or too long.
      const one = join(dir, "one.jsonl");
      const two = join(dir, "two.jsonl");
      await writeFile(one, ['{"text":"a document"}', "", "{not json", '{"text":7}', '{"text":"   "}', '{"text":"ab"}'].join("\n") + "\n");
      await writeFile(two, '{"text":"' + "y".repeat(50) + '"}\n{"text":"fine text"}\n');
      const recipe = parseRecipe(
        [
          "name: t",
          "filters: {min_chars: 3, max_chars: 40}",
          "sources:",
          "  - {name: qa, weight: 1, local: {files: [qa.parquet]}, text_template: '{q} {a}'}",
          "  - {name: web, weight: 1, local: {files: ['*.jsonl']}}",
        ].join("\n"),
        join(dir, "t.yaml"),
      );
      const file = (path: string, localPath: string) => ({ path, size: 0, sha256: "0".repeat(64), localPath, inSlice: true });
      const sources: ResolvedSource[] = [
        { spec: recipe.sources[0]!, index: 0, files: [file("qa.parquet", qa)] },
        { spec: recipe.sources[1]!, index: 1, files: [file("one.jsonl", one), file("two.jsonl", two)] },
      ];
      const events: ProgressEvent[] = [];
      const rows = await ingest(db, recipe, sources, (e) => events.push(e));
      assert.equal(rows, 11);
      const docs = await db.rows<{ source_idx: number; file_idx: number; row_idx: bigint; text: string | null; skip_reason: string | null }>(
        `SELECT * FROM ${DOCUMENTS} ORDER BY source_idx, file_idx, row_idx`,
      );
      assert.deepEqual(
        docs.map((d) => [d.source_idx, d.file_idx, Number(d.row_idx), d.skip_reason ?? d.text]),
        [
          [0, 0, 0, "What is 2+2? 4"],
          [0, 0, 1, "null_text"],
          [0, 0, 2, "Hi x"],
          [1, 0, 0, "a document"],
          [1, 0, 1, "blank_line"],
          [1, 0, 2, "malformed_json"],
          [1, 0, 3, "text_not_string"],
          [1, 0, 4, "empty_text"],
          [1, 0, 5, "too_short"],
          [1, 1, 0, "too_long"],
          [1, 1, 1, "fine text"],
        ],
      );
      const files = await db.rows<{ source_idx: number; file_idx: number; path: string; rows: bigint }>(`SELECT * FROM files ORDER BY source_idx, file_idx`);
      assert.deepEqual(files.map((f) => [f.source_idx, f.file_idx, f.path, Number(f.rows)]), [[0, 0, "qa.parquet", 3], [1, 0, "one.jsonl", 6], [1, 1, "two.jsonl", 2]]);
      assert.deepEqual(
        events.map((e) => (e.type === "stage_progress" ? `${e.done}/${e.total}` : e.type)),
        ["1/3", "2/3", "3/3"],
      );
    } finally {
      db.close();
    }
  });

  it("names the file and the columns it has when the template names a missing column", async () => {
    const db = await BuildDb.open(":memory:");
    try {
      const path = join(dir, "cols.parquet");
      await db.run(`COPY (SELECT 'x' AS body) TO ${sqlString(path)} (FORMAT parquet)`);
      const recipe = parseRecipe("name: t\nsources:\n  - {name: s, weight: 1, local: {files: [cols.parquet]}}\n", join(dir, "t.yaml"));
      const source: ResolvedSource = { spec: recipe.sources[0]!, index: 0, files: [{ path: "cols.parquet", size: 0, sha256: "0".repeat(64), localPath: path, inSlice: true }] };
      await assert.rejects(ingest(db, recipe, [source], () => {}), /source 's': cols\.parquet: text column 'text', which is not a column; the file has: body; set text_column to one of them/);
    } finally {
      db.close();
    }
  });
});
