import { UsageError } from "../../../util/errors.ts";
import { jsonlReader } from "./jsonl.ts";
import { parquetReader } from "./parquet.ts";
import type { FormatReader } from "./reader.ts";

/** Every input format a source may use; the first whose pattern matches a file reads it. */
export const READERS: readonly FormatReader[] = [parquetReader, jsonlReader];

export function readerFor(path: string): FormatReader {
  const reader = READERS.find((r) => r.matches.test(path));
  if (!reader) {
    throw new UsageError(`${path}: unsupported file type; sources take ${READERS.map((r) => r.extensions).join(", ")} (narrow the file globs)`);
  }
  return reader;
}
