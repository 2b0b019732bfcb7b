import { DuckDBConnection, DuckDBInstance, type DuckDBValue } from "@duckdb/node-api";

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

  close(): void {
    this.conn.closeSync();
    this.instance.closeSync();
  }
}

/** Quotes an identifier for SQL (column names come from user files). */
export function ident(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

export function sqlString(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}
