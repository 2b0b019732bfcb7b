import { join } from "node:path";
import { UsageError } from "../util/errors.ts";
import { BuildDb, sqlString } from "../util/duckdb.ts";
import type { Manifest } from "./manifest.ts";
import { readNpyInfo, readSequences } from "./npy.ts";

/** One document's piece of a sequence, with its provenance and its token span within the whole document. */
export interface SequenceDocument {
  source: string;
  file: string;
  row: number;
  /** [first, end) token offsets within the document */
  tokens: [number, number];
  doc_length: number;
  ids: number[];
}

export interface SequenceDocuments {
  sequence: number;
  shard: string;
  documents: SequenceDocument[];
}

interface Piece {
  source: string;
  file: string;
  row: bigint;
  start: bigint;
  length: number;
  doc_offset: number;
  doc_length: number;
}

/**
 * Global sequences of a build split at document boundaries: each piece's ids with the source, file and row
 * it came from, read from the shard and its document index.
 */
export async function sequenceDocuments(outDir: string, manifest: Manifest, sequences: number[]): Promise<SequenceDocuments[]> {
  const out: SequenceDocuments[] = [];
  const db = await BuildDb.open(":memory:", 1);
  try {
    for (const seq of sequences) {
      if (!Number.isInteger(seq) || seq < 0 || seq >= manifest.total_sequences) {
        throw new UsageError(`--sequence ${seq}: out of range; the build has sequences 0..${manifest.total_sequences - 1}`);
      }
      let first = 0;
      const shard = manifest.shards.find((s) => (seq < first + s.sequences ? true : ((first += s.sequences), false)))!;
      const local = seq - first;
      const info = await readNpyInfo(join(outDir, shard.path));
      const ids = await readSequences(join(outDir, shard.path), info, local, 1);
      const L = manifest.sequence_length;
      const lo = local * L;
      const pieces = await db.rows<Piece>(
        `SELECT source, file, "row", start, length, doc_offset, doc_length FROM read_parquet(${sqlString(join(outDir, shard.doc_index))})
         WHERE start < ${lo + L} AND start + length > ${lo} ORDER BY start`,
      );
      const documents = pieces.map((p): SequenceDocument => {
        const from = Math.max(Number(p.start), lo);
        const to = Math.min(Number(p.start) + p.length, lo + L);
        const firstToken = p.doc_offset + (from - Number(p.start));
        return { source: p.source, file: p.file, row: Number(p.row), tokens: [firstToken, firstToken + (to - from)], doc_length: p.doc_length, ids: Array.from(ids.subarray(from - lo, to - lo)) };
      });
      out.push({ sequence: seq, shard: shard.path, documents });
    }
  } finally {
    db.close();
  }
  return out;
}
