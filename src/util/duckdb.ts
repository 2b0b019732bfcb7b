import { BIGINT, type DuckDBAppender, DuckDBConnection, DuckDBDataChunk, DuckDBInstance, type DuckDBType, type DuckDBValue, DOUBLE, INTEGER, UINTEGER } from "@duckdb/node-api";

/** A DuckDB database and one connection: the build's work database, or an in-memory one for reading parquet (verify, inspect). */
export class BuildDb {
  private constructor(
    private readonly instance: DuckDBInstance,
    readonly conn: DuckDBConnection,
    /** The database file, or ":memory:". */
    readonly path: string,
  ) {}

  /** limits: DuckDB's memory_limit (it spills to tempDirectory beyond it) for a build held to a budget. */
  static async open(path: string, threads = 2, limits?: { memoryBytes: number; tempDirectory: string }): Promise<BuildDb> {
    // Insertion order is part of reproducibility: results without ORDER BY keep the scan order.
    const instance = await DuckDBInstance.create(path, {
      threads: String(threads),
      preserve_insertion_order: "true",
      ...(limits ? { memory_limit: `${Math.max(1, Math.floor(limits.memoryBytes / 2 ** 20))}MiB`, temp_directory: limits.tempDirectory } : {}),
    });
    return new BuildDb(instance, await instance.connect(), path);
  }

  /** Changes DuckDB's memory limit (it evicts, spilling to its temp directory, down to the new one). */
  async setMemoryLimit(bytes: number): Promise<void> {
    await this.conn.run(`SET memory_limit = '${Math.max(1, Math.floor(bytes / 2 ** 20))}MiB'`);
  }

  async run(sql: string, params?: DuckDBValue[] | Record<string, DuckDBValue>): Promise<void> {
    await this.conn.run(sql, params);
  }

  async rows<T = Record<string, unknown>>(sql: string, params?: DuckDBValue[] | Record<string, DuckDBValue>): Promise<T[]> {
    const reader = await this.conn.runAndReadAll(sql, params);
    return reader.getRowObjectsJS() as T[];
  }

  async one<T = Record<string, unknown>>(sql: string, params?: DuckDBValue[] | Record<string, DuckDBValue>): Promise<T> {
    const [row] = await this.rows<T>(sql, params);
    if (!row) throw new Error(`query returned no row: ${sql}`);
    return row;
  }

  /**
   * (Re)creates `table` with the given numeric columns and returns an appender on a connection of its own, so rows can
   * be added between other queries of this one (an appender holds its connection). Not a TEMP table: those are
   * private to one connection.
   */
  async appender(table: string, columns: [name: string, type: AppendType][]): Promise<RowAppender> {
    await this.run(`CREATE OR REPLACE TABLE ${table} (${columns.map(([n, t]) => `${n} ${t}`).join(", ")})`);
    const conn = await this.instance.connect();
    try {
      return new RowAppender(conn, await conn.createAppender(table), columns.map(([, t]) => t));
    } catch (error) {
      conn.closeSync();
      throw error;
    }
  }

  close(): void {
    this.conn.closeSync();
    this.instance.closeSync();
  }
}

export type AppendType = "UINTEGER" | "INTEGER" | "BIGINT" | "DOUBLE";
/** Rows in one DuckDB vector (a data chunk holds at most this many). */
const VECTOR_ROWS = 2048;

/** Rows of numbers appended to one table (BuildDb.appender); they are in the table once `close` returns. */
export class RowAppender {
  private open = true;
  constructor(
    private readonly conn: DuckDBConnection,
    private readonly app: DuckDBAppender,
    private readonly types: AppendType[],
  ) {}

  /** A BIGINT column also takes a bigint (a 64-bit key a number cannot hold exactly). */
  append(values: readonly (number | bigint)[]): void {
    if (!this.open) throw new Error("append after the appender was closed");
    this.types.forEach((t, i) => {
      const v = values[i]!;
      if (t === "BIGINT") this.app.appendBigInt(typeof v === "bigint" ? v : BigInt(v));
      else if (typeof v === "bigint") throw new Error(`a bigint in the ${t} column ${i}`);
      else if (t === "UINTEGER") this.app.appendUInteger(v);
      else if (t === "INTEGER") this.app.appendInteger(v);
      else this.app.appendDouble(v);
    });
    this.app.endRow();
  }

  /**
   * Appends many rows given column by column (columns[c][r]), a vector at a time: far fewer calls than append's one
   * a value, for the stages that append millions of rows (MinHash band keys).
   */
  appendColumns(columns: readonly (readonly (number | bigint)[])[]): void {
    if (!this.open) throw new Error("append after the appender was closed");
    const rows = columns[0]?.length ?? 0;
    const types: DuckDBType[] = this.types.map((t) => ({ UINTEGER, INTEGER, BIGINT, DOUBLE })[t]);
    for (let at = 0; at < rows; at += VECTOR_ROWS) {
      const n = Math.min(VECTOR_ROWS, rows - at);
      const chunk = DuckDBDataChunk.create(types, n);
      chunk.setColumns(
        columns.map((col, c) => {
          const part = col.slice(at, at + n);
          return this.types[c] === "BIGINT" ? part.map((v) => (typeof v === "bigint" ? v : BigInt(v))) : part;
        }),
      );
      this.app.appendDataChunk(chunk);
    }
  }

  /** Flushes every row into the table. */
  close(): void {
    if (!this.open) return;
    this.open = false;
    try {
      this.app.closeSync();
    } finally {
      this.conn.closeSync();
    }
  }

  /** Closes without caring whether the rows arrived (a failed stage rebuilds its table). */
  abandon(): void {
    try {
      this.close();
    } catch {
      // the stage is failing already; its own error is the one to report
    }
  }
}

/** Quotes an identifier for SQL (column names come from user files). */
export { ident, sqlString } from "./sql.ts";
