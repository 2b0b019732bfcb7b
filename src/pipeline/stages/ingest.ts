import type { Recipe } from "../../recipe/schema.ts";
import type { BuildDb } from "../../util/duckdb.ts";
import { filterText } from "./filters.ts";
import type { ProgressSink } from "../progress.ts";
import { readerFor } from "./readers/index.ts";
import type { ResolvedSource } from "../resolve.ts";
import { createIngestTables, documentCount, recordFile } from "../schema.ts";
import { parseTemplate, type TemplatePart } from "../../util/template.ts";

function textParts(source: ResolvedSource): TemplatePart[] {
  const where = `source '${source.spec.name}'`;
  if (source.spec.text_template) return parseTemplate(source.spec.text_template, `${where}: text_template`);
  return [{ field: source.spec.text_column ?? "text" }];
}

/**
 * Reads every file into `documents` through the reader for its format, with provenance (source, file, row)
 * and a skip reason where one applies, then runs the text filters. Files of another partition are left out; a file
 * still downloading is waited for (`ready`). Returns the number of rows.
 */
export async function ingest(
  db: BuildDb,
  recipe: Recipe,
  sources: ResolvedSource[],
  sink: ProgressSink,
  ready: (source: number, file: number) => Promise<void> = async () => {},
): Promise<number> {
  await createIngestTables(db);
  const total = sources.reduce((n, s) => n + s.files.filter((f) => f.inSlice).length, 0);
  let done = 0;
  for (const source of sources) {
    const parts = textParts(source);
    for (const [fileIdx, file] of source.files.entries()) {
      if (!file.inSlice) continue; // another partition reads it
      const where = `source '${source.spec.name}': ${file.path}`;
      await ready(source.index, fileIdx); // still downloading, perhaps
      await readerFor(file.path).read({ db, source, fileIdx, path: file.localPath, where, parts });
      await recordFile(db, source.index, fileIdx, file.path, file.sha256);
      sink({ type: "stage_progress", stage: "ingest", done: ++done, total, unit: "files" });
    }
  }
  await filterText(db, recipe.filters);
  return documentCount(db);
}
