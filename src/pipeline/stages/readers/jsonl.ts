import { createReadStream } from "node:fs";
import { createGunzip } from "node:zlib";
import { RuntimeFailure } from "../../../util/errors.ts";
import { templateFields, type TemplatePart } from "../../../util/template.ts";
import { missingFieldError } from "./reader.ts";
import type { FormatReader, IngestTarget } from "./reader.ts";

export type JsonlRow = { row: number; text: string | null; reason: string | null };

/** What the lines of a file held, to tell a misnamed text column from rows that lack it. */
export interface JsonlFields {
  /** lines that were JSON objects */
  objects: number;
  /** of those, how many had each field the template names (null values included) */
  withField: Map<string, number>;
  /** the fields of the first objects, for the message */
  keys: Set<string>;
}

const KEYS_SAMPLED = 100;

/**
 * Reads JSON lines one by one, so each bad line is counted with its row number: DuckDB's JSON reader can
 * only drop malformed lines wholesale (ignore_errors) and rejects a whole file on invalid UTF-8.
 */
export async function* readJsonl(path: string, parts: readonly TemplatePart[], fields?: JsonlFields): AsyncGenerator<JsonlRow> {
  let stream: NodeJS.ReadableStream = createReadStream(path);
  if (/\.gz$/i.test(path)) stream = stream.pipe(createGunzip());
  const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });
  let row = 0;
  const parse = (line: Buffer): JsonlRow => {
    const r = row++;
    let text: string;
    try {
      text = decoder.decode(line);
    } catch {
      return { row: r, text: null, reason: "invalid_utf8" };
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      return { row: r, text: null, reason: "malformed_json" };
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) return { row: r, text: null, reason: "malformed_json" };
    if (fields) {
      if (fields.objects++ < KEYS_SAMPLED) for (const key of Object.keys(value)) fields.keys.add(key);
      for (const part of parts) if ("field" in part && part.field in value) fields.withField.set(part.field, (fields.withField.get(part.field) ?? 0) + 1);
    }
    let out = "";
    for (const part of parts) {
      if ("literal" in part) {
        out += part.literal;
        continue;
      }
      const field = (value as Record<string, unknown>)[part.field];
      if (field === null || field === undefined) return { row: r, text: null, reason: "null_text" };
      if (typeof field !== "string") return { row: r, text: null, reason: "text_not_string" };
      out += field;
    }
    return { row: r, text: out, reason: null };
  };
  // A line may span many chunks: they are collected and joined once its newline arrives, so one long
  // line costs linear time (joining on every chunk made a 50 MB line take minutes).
  let held: Buffer[] = [];
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    let start = 0;
    for (let nl = chunk.indexOf(10, start); nl >= 0; nl = chunk.indexOf(10, start)) {
      const piece = chunk.subarray(start, nl);
      const line = held.length ? Buffer.concat([...held, piece]) : piece;
      held = [];
      start = nl + 1;
      const end = line.length > 0 && line[line.length - 1] === 13 ? line.length - 1 : line.length;
      const body = line.subarray(0, end);
      // A blank line holds no document; it is still a row, counted under its own reason.
      yield isBlank(body) ? { row: row++, text: null, reason: "blank_line" } : parse(body);
    }
    if (start < chunk.length) held.push(chunk.subarray(start));
  }
  const last = Buffer.concat(held);
  if (last.length > 0 && !isBlank(last)) yield parse(last);
}

function isBlank(line: Buffer): boolean {
  for (const byte of line) if (byte !== 32 && byte !== 9 && byte !== 13 && byte !== 10 && byte !== 11 && byte !== 12 && byte !== 0xa0) return false; // what latin1 trim() removed before
  return true;
}

/** JSON lines (optionally gzipped), read line by line so each bad line is counted with its row number. */
export const jsonlReader: FormatReader = {
  name: "jsonl",
  matches: /\.(jsonl|ndjson|json)(\.gz)?$/i,
  extensions: ".jsonl, .jsonl.gz",
  async columns(path: string): Promise<string[]> {
    const fields: JsonlFields = { objects: 0, withField: new Map(), keys: new Set() };
    let rows = 0;
    for await (const _row of readJsonl(path, [], fields)) if (++rows >= KEYS_SAMPLED) break;
    return [...fields.keys];
  },
  async read({ db, source, path, fileIdx, where, parts }: IngestTarget): Promise<void> {
    const appender = await db.conn.createAppender("documents", "main", "corpus");
    const fields: JsonlFields = { objects: 0, withField: new Map(), keys: new Set() };
    try {
      for await (const row of readJsonl(path, parts, fields)) {
        appender.appendInteger(source.index);
        appender.appendInteger(fileIdx);
        appender.appendBigInt(BigInt(row.row));
        if (row.text === null) appender.appendNull();
        else appender.appendVarchar(row.text);
        if (row.reason === null) appender.appendNull();
        else appender.appendVarchar(row.reason);
        appender.endRow();
      }
    } catch (error) {
      appender.closeSync();
      throw new RuntimeFailure(`${where}: cannot be read (${(error as Error).message})`);
    }
    appender.closeSync();
    // A field no line has is a misnamed column, not a file of rows without text: refused, not counted as null_text.
    const missing = fields.objects > 0 ? templateFields(parts).find((f) => !fields.withField.has(f)) : undefined;
    if (missing !== undefined) throw missingFieldError(source.index, source.spec.text_template !== undefined, where, missing, [...fields.keys], "is a field of no line; the lines have");
  },
};
