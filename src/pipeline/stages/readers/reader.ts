import { RecipeFieldError } from "../../../recipe/load.ts";
import type { BuildDb } from "../../../util/duckdb.ts";
import { closest } from "../../../util/did-you-mean.ts";
import type { ResolvedSource } from "../../resolve.ts";
import type { TemplatePart } from "../../../util/template.ts";

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
  /** The fields a row of the file has (a sample of lines, or the schema), for `validate`. */
  columns(path: string): Promise<string[]>;
}

/** A text column (or a text_template field) a file does not have: a recipe error at that field, with the nearest name. */
export function missingFieldError(sourceIndex: number, template: boolean, where: string, field: string, has: string[], what: string): RecipeFieldError {
  const near = closest(field, has);
  const which = template ? "text_template names" : "text column";
  return new RecipeFieldError(
    ["sources", sourceIndex, template ? "text_template" : "text_column"],
    `${where}: ${which} '${field}', which ${what}: ${has.slice(0, 20).join(", ")}${has.length > 20 ? ", …" : ""}` +
      `${near ? ` (did you mean '${near}'?)` : ""}; set ${template ? "text_template" : "text_column"} to one of them`,
  );
}
