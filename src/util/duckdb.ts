import { BIGINT, type DuckDBAppender, DuckDBBlobVector, DuckDBConnection, DuckDBDataChunk, DuckDBInstance, type DuckDBType, type DuckDBValue, DOUBLE, INTEGER, UINTEGER } from "@duckdb/node-api";
import bindings from "@duckdb/node-bindings";

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

  /**
   * A query's result column by column, a BLOB column's values as their bytes: texts read as `encode(text)` reach the
   * addon as UTF-8 without being decoded into strings and encoded back (the quality stage's millions of rows).
   */
  async columns(sql: string): Promise<unknown[][]> {
    const result = await this.conn.run(sql);
    const out = Array.from({ length: result.columnCount }, (): unknown[] => []);
    for (let k = 0; k < result.chunkCount; k++) {
      const chunk = result.getChunk(k);
      out.forEach((column, c) => {
        const vector = chunk.getColumnVector(c);
        if (vector instanceof DuckDBBlobVector) {
          for (let i = 0; i < vector.itemCount; i++) {
            const bytes = vector.getItemBytes(i);
            // Up to 12 bytes are a view of the chunk's own memory: copied, as the chunk goes with the result.
            column.push(bytes !== null && bytes.byteLength <= 12 ? bytes.slice() : bytes);
          }
        } else for (let i = 0; i < vector.itemCount; i++) column.push(vector.getItem(i));
      });
    }
    return out;
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
/** The typed array that holds each column type's values as DuckDB's vectors hold them. */
const TYPED_COLUMN = { UINTEGER: Uint32Array, INTEGER: Int32Array, BIGINT: BigInt64Array, DOUBLE: Float64Array } as const;
/** A column to append: plain numbers (a BIGINT column also takes bigints), or its type's typed array (TYPED_COLUMN). */
export type AppendColumn = readonly (number | bigint)[] | Uint32Array | Int32Array | BigInt64Array | Float64Array;
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
   * a value, for the stages that append millions of rows (MinHash band keys). A typed array of the column's type
   * (TYPED_COLUMN) is copied into the vector as bytes, with no value made in JavaScript on the way.
   */
  appendColumns(columns: readonly AppendColumn[]): void {
    if (!this.open) throw new Error("append after the appender was closed");
    if (columns.length !== this.types.length) throw new Error(`${columns.length} columns given to a table of ${this.types.length}`);
    const rows = columns[0]?.length ?? 0;
    columns.forEach((col, c) => {
      const t = this.types[c]!;
      if (col.length !== rows) throw new Error(`column ${c} has ${col.length} rows, column 0 has ${rows}`);
      if (ArrayBuffer.isView(col) && !(col instanceof TYPED_COLUMN[t])) throw new Error(`column ${c} is a ${col.constructor.name}, not the ${TYPED_COLUMN[t].name} (or plain numbers) that ${t} takes`);
    });
    const types: DuckDBType[] = this.types.map((t) => ({ UINTEGER, INTEGER, BIGINT, DOUBLE })[t]);
    for (let at = 0; at < rows; at += VECTOR_ROWS) {
      const n = Math.min(VECTOR_ROWS, rows - at);
      const chunk = DuckDBDataChunk.create(types, n);
      columns.forEach((col, c) => {
        if (ArrayBuffer.isView(col)) {
          // A new chunk's vectors are all valid: only the values need writing.
          const width = col.BYTES_PER_ELEMENT;
          bindings.copy_data_to_vector(bindings.data_chunk_get_vector(chunk.chunk, c), 0, col.buffer as ArrayBuffer, col.byteOffset + at * width, n * width);
        } else {
          const part = col.slice(at, at + n);
          chunk.setColumnValues(c, this.types[c] === "BIGINT" ? part.map((v) => (typeof v === "bigint" ? v : BigInt(v))) : part);
        }
      });
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
