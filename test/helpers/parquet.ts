/** Rows of a parquet file, read by DuckDB, for tests that build inputs from the fixtures' real rows. */
import { BuildDb, sqlString } from "../../src/util/duckdb.ts";

export async function parquetRows(path: string): Promise<Record<string, unknown>[]> {
  const db = await BuildDb.open(":memory:", 1);
  try {
    return await db.rows(`SELECT * FROM read_parquet(${sqlString(path)})`);
  } finally {
    db.close();
  }
}
