import type { BuildDb } from "../../util/duckdb.ts";
import type { ResolvedSource } from "../resolve.ts";
import type { TemplatePart } from "../template.ts";

/** Where a reader puts a file's rows: the `documents` table, for this source and file. */
export interface IngestTarget {
  db: BuildDb;
  source: ResolvedSource;
  fileIdx: number;
  /** the file on disk */
  path: string;
  /** "source 'name': path/in/recipe" for messages */
  where: string;
  /** how a row becomes text: one column, or a template over several */
  parts: TemplatePart[];
}

/**
 * One input file format. A reader appends every row of a file to `documents` (source_idx, file_idx, row_idx,
 * text, skip_reason): a row that is not a document keeps its row number, with text NULL and one of the skip
 * reasons in filters.ts. Adding a format is a file in this folder and a line in readers/index.ts.
 */
export interface FormatReader {
  /** e.g. "parquet" */
  name: string;
  /** file names this reader takes */
  matches: RegExp;
  /** how the format is written in messages, e.g. ".jsonl, .jsonl.gz" */
  extensions: string;
  read(target: IngestTarget): Promise<void>;
}
