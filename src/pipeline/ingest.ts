import type { Recipe } from "../recipe/schema.ts";
import { UsageError, RuntimeFailure } from "../util/errors.ts";
import { type BuildDb, ident, sqlString } from "../util/duckdb.ts";
import { readJsonl } from "./jsonl.ts";
import type { ProgressSink } from "./progress.ts";
import type { ResolvedSource } from "./resolve.ts";
import { parseTemplate, templateFields, type TemplatePart } from "./template.ts";

/** Why a row is not a document; every reason is counted per source in the manifest. */
export const SKIP_REASONS = [
  "null_text",
  "empty_text",
  "invalid_utf8",
  "malformed_json",
  "text_not_string",
  "blank_line",
  "too_short",
  "too_long",
  "too_few_tokens",
  "too_many_tokens",
] as const;

function textParts(source: ResolvedSource): TemplatePart[] {
  const where = `source '${source.spec.name}'`;
  if (source.spec.text_template) return parseTemplate(source.spec.text_template, `${where}: text_template`);
  return [{ field: source.spec.text_column ?? "text" }];
}

function fileKind(path: string): "parquet" | "jsonl" {
  if (/\.parquet$/i.test(path)) return "parquet";
  if (/\.(jsonl|ndjson|json)(\.gz)?$/i.test(path)) return "jsonl";
  throw new UsageError(`${path}: unsupported file type; sources take .parquet, .jsonl, .jsonl.gz (narrow the file globs)`);
}

export async function createDocumentTables(db: BuildDb): Promise<void> {
  await db.run(`DROP TABLE IF EXISTS documents`);
  await db.run(`DROP TABLE IF EXISTS files`);
  await db.run(`CREATE TABLE files (source_idx INTEGER, file_idx INTEGER, path VARCHAR, sha256 VARCHAR, rows BIGINT)`);
  await db.run(
    `CREATE TABLE documents (source_idx INTEGER, file_idx INTEGER, row_idx BIGINT, text VARCHAR, skip_reason VARCHAR)`,
  );
}

async function ingestParquet(db: BuildDb, source: ResolvedSource, fileIdx: number, path: string, parts: TemplatePart[]): Promise<void> {
  const where = `source '${source.spec.name}': ${source.files[fileIdx]!.path}`;
  let columns: { column_name: string; column_type: string }[];
  try {
    columns = await db.rows(`DESCRIBE SELECT * FROM read_parquet(${sqlString(path)})`);
  } catch (error) {
    throw new RuntimeFailure(`${where}: cannot be read as parquet (${(error as Error).message.split("\n")[0]})`);
  }
  const types = new Map(columns.map((c) => [c.column_name, c.column_type]));
  for (const field of templateFields(parts)) {
    if (!types.has(field)) {
      const which = source.spec.text_template ? "text_template names" : "text column";
      throw new UsageError(`${where}: ${which} '${field}' is not a column; it has: ${[...types.keys()].join(", ")} (set text_column or text_template)`);
    }
  }
  const single = parts.length === 1 && "field" in parts[0]!;
  if (single && !["VARCHAR", "BLOB"].includes(types.get((parts[0] as { field: string }).field)!)) {
    const field = (parts[0] as { field: string }).field;
    throw new UsageError(`${where}: text column '${field}' has type ${types.get(field)}, not a string; choose a string column or a text_template`);
  }
  // Byte columns (BLOB) are decoded as UTF-8 here, so a bad row is counted rather than failing the file
  // (DuckDB itself refuses a string column with invalid UTF-8: that stops the build, naming the file).
  const fields = templateFields(parts);
  const blobs = fields.filter((f) => types.get(f) === "BLOB");
  const value = (f: string) => (types.get(f) === "BLOB" ? `try(decode(${ident(f)}))` : `CAST(${ident(f)} AS VARCHAR)`);
  // `||` propagates NULL, so a row with any missing field counts as null text.
  const expr = parts.map((p) => ("literal" in p ? sqlString(p.literal) : value(p.field))).join(" || ");
  const badBytes = blobs.length ? blobs.map((f) => `(${ident(f)} IS NOT NULL AND try(decode(${ident(f)})) IS NULL)`).join(" OR ") : "false";
  try {
    await db.run(
      `INSERT INTO documents SELECT ${source.index}, ${fileIdx}, file_row_number, t,
         CASE WHEN bad THEN 'invalid_utf8' WHEN t IS NULL THEN 'null_text' END
       FROM (SELECT file_row_number, ${expr} AS t, ${badBytes} AS bad FROM read_parquet(${sqlString(path)}, file_row_number = true))
       ORDER BY file_row_number`,
    );
  } catch (error) {
    throw new RuntimeFailure(`${where}: reading failed (${(error as Error).message.split("\n")[0]})`);
  }
}

async function ingestJsonl(db: BuildDb, source: ResolvedSource, fileIdx: number, path: string, parts: TemplatePart[]): Promise<void> {
  const appender = await db.conn.createAppender("documents");
  try {
    for await (const row of readJsonl(path, parts)) {
      appender.appendInteger(source.index);
      appender.appendInteger(fileIdx);
      appender.appendBigInt(BigInt(row.row));
      if (row.text === null) appender.appendNull();
      else appender.appendVarchar(row.text);
      if (row.reason === null) appender.appendNull();
      else appender.appendVarchar(row.reason);
      appender.endRow();
    }
  } catch (error) {
    appender.closeSync();
    throw new RuntimeFailure(`source '${source.spec.name}': ${source.files[fileIdx]!.path}: cannot be read (${(error as Error).message})`);
  }
  appender.closeSync();
}

/** Reads every file into `documents`, with provenance (source, file, row) and a skip reason where one applies. */
export async function ingest(db: BuildDb, recipe: Recipe, sources: ResolvedSource[], sink: ProgressSink): Promise<number> {
  await createDocumentTables(db);
  const total = sources.reduce((n, s) => n + s.files.length, 0);
  let done = 0;
  for (const source of sources) {
    const parts = textParts(source);
    for (const [fileIdx, file] of source.files.entries()) {
      if (fileKind(file.path) === "parquet") await ingestParquet(db, source, fileIdx, file.localPath, parts);
      else await ingestJsonl(db, source, fileIdx, file.localPath, parts);
      await db.run(
        `INSERT INTO files SELECT ${source.index}, ${fileIdx}, ${sqlString(file.path)}, ${sqlString(file.sha256)},
           (SELECT count(*) FROM documents WHERE source_idx = ${source.index} AND file_idx = ${fileIdx})`,
      );
      sink({ type: "stage_progress", stage: "ingest", done: ++done, total, unit: "files" });
    }
  }
  // Whitespace here is RE2's \s plus Unicode separators (\p{Z}) and the BOM.
  const { min_chars, max_chars } = recipe.filters;
  await db.run(
    `UPDATE documents SET skip_reason = CASE
       WHEN regexp_full_match(text, '[\\s\\p{Z}\\x{FEFF}]*') THEN 'empty_text'
       WHEN length(text) < ${min_chars} THEN 'too_short'
       ${max_chars !== undefined ? `WHEN length(text) > ${max_chars} THEN 'too_long'` : ""}
     END WHERE skip_reason IS NULL`,
  );
  const { n } = await db.one<{ n: bigint }>(`SELECT count(*) AS n FROM documents`);
  return Number(n);
}
