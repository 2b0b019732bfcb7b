import { RuntimeFailure, UsageError } from "../../../util/errors.ts";
import { ident, sqlString } from "../../../util/sql.ts";
import { templateFields } from "../../../util/template.ts";
import { DOCUMENTS } from "../../schema.ts";
import { missingFieldError, type FormatReader, type IngestTarget } from "./reader.ts";

/** Parquet, read by DuckDB itself; a text column stored as bytes is decoded there, invalid UTF-8 rows counted. */
export const parquetReader: FormatReader = {
  name: "parquet",
  matches: /\.parquet$/i,
  extensions: ".parquet",
  async columns(path: string): Promise<string[]> {
    const { DuckDBInstance } = await import("@duckdb/node-api");
    const conn = await (await DuckDBInstance.create(":memory:")).connect();
    try {
      const described = await conn.runAndReadAll(`DESCRIBE SELECT * FROM read_parquet(${sqlString(path)})`);
      return (described.getRowObjectsJS() as { column_name: string }[]).map((c) => c.column_name);
    } catch (error) {
      throw new RuntimeFailure(`${path}: cannot be read as parquet (${(error as Error).message.split("\n")[0]})`);
    } finally {
      conn.closeSync();
    }
  },
  async read({ db, source, fileIdx, path, where, parts }: IngestTarget): Promise<void> {
    let columns: { column_name: string; column_type: string }[];
    try {
      columns = await db.rows(`DESCRIBE SELECT * FROM read_parquet(${sqlString(path)})`);
    } catch (error) {
      throw new RuntimeFailure(`${where}: cannot be read as parquet (${(error as Error).message.split("\n")[0]})`);
    }
    const types = new Map(columns.map((c) => [c.column_name, c.column_type]));
    for (const field of templateFields(parts)) {
      if (!types.has(field)) throw missingFieldError(source.index, source.spec.text_template !== undefined, where, field, [...types.keys()], "is not a column; the file has");
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
        `INSERT INTO ${DOCUMENTS} SELECT ${source.index}, ${fileIdx}, file_row_number, t,
           CASE WHEN bad THEN 'invalid_utf8' WHEN t IS NULL THEN 'null_text' END
         FROM (SELECT file_row_number, ${expr} AS t, ${badBytes} AS bad FROM read_parquet(${sqlString(path)}, file_row_number = true))
         ORDER BY file_row_number`,
      );
    } catch (error) {
      throw new RuntimeFailure(`${where}: reading failed (${(error as Error).message.split("\n")[0]})`);
    }
  },
};
