import type { BuildDb } from "../util/duckdb.ts";
import type { Provenance } from "./pack.ts";

/** Rows a read of the work database takes at once: the corpus is never one result set. */
export const ROWS_PER_READ = 65536;

/**
 * Every row of `table` (which has a dense `ord` column from 0) in ord order, ROWS_PER_READ at a time: memory holds
 * one chunk of row objects, whatever the corpus's size.
 */
export async function forEachByOrd<T>(db: BuildDb, table: string, columns: string, count: number, each: (row: T, ord: number) => void): Promise<void> {
  for (let first = 0; first < count; first += ROWS_PER_READ) {
    const rows = await db.rows<T>(`SELECT ${columns} FROM ${table} WHERE ord >= ${first} AND ord < ${first + ROWS_PER_READ} ORDER BY ord`);
    rows.forEach((row, i) => each(row, first + i));
  }
}

/**
 * Where each unique document came from, by ord, in typed arrays: 32 bytes a document (source, file, row, and the
 * 128-bit content hash as bytes, turned back into its hex form only when a document index row is written).
 */
export class ProvenanceTable implements Provenance {
  readonly sourceIdx: Int32Array;
  readonly fileIdx: Int32Array;
  readonly rowIdx: Float64Array;
  private readonly hashes: Buffer;

  constructor(
    readonly count: number,
    readonly files: string[][],
  ) {
    this.sourceIdx = new Int32Array(count);
    this.fileIdx = new Int32Array(count);
    this.rowIdx = new Float64Array(count);
    this.hashes = Buffer.alloc(16 * count);
  }

  set(ord: number, source: number, file: number, row: number, hash: string): void {
    this.sourceIdx[ord] = source;
    this.fileIdx[ord] = file;
    this.rowIdx[ord] = row;
    // The dedup key is md5's lowercase hex (dedup.ts): anything else would not come back the same.
    if (!/^[0-9a-f]{32}$/.test(hash) || this.hashes.write(hash, 16 * ord, 16, "hex") !== 16) throw new Error(`document ${ord}: hash ${JSON.stringify(hash)} is not 32 lowercase hex digits`);
  }

  hashAt(ord: number): string {
    return this.hashes.toString("hex", 16 * ord, 16 * ord + 16);
  }

  /** The provenance of unique_docs, read a chunk at a time. */
  static async ofUniqueDocs(db: BuildDb, count: number, files: string[][]): Promise<ProvenanceTable> {
    const prov = new ProvenanceTable(count, files);
    await forEachByOrd<{ source_idx: number; file_idx: number; row_idx: bigint; doc_hash: string }>(db, "unique_docs", "source_idx, file_idx, row_idx, doc_hash", count, (d, ord) =>
      prov.set(ord, d.source_idx, d.file_idx, Number(d.row_idx), d.doc_hash),
    );
    return prov;
  }
}
