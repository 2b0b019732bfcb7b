import { createReadStream } from "node:fs";
import { createGunzip } from "node:zlib";
import type { TemplatePart } from "./template.ts";

export type JsonlRow = { row: number; text: string | null; reason: string | null };

/**
 * Reads JSON lines one by one, so each bad line is counted with its row number: DuckDB's JSON reader can
 * only drop malformed lines wholesale (ignore_errors) and rejects a whole file on invalid UTF-8.
 */
export async function* readJsonl(path: string, parts: readonly TemplatePart[]): AsyncGenerator<JsonlRow> {
  let stream: NodeJS.ReadableStream = createReadStream(path);
  if (/\.gz$/i.test(path)) stream = stream.pipe(createGunzip());
  const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });
  let pending: Buffer = Buffer.alloc(0);
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
  for await (const chunk of stream) {
    pending = pending.length ? Buffer.concat([pending, chunk as Buffer]) : (chunk as Buffer);
    let start = 0;
    for (let nl = pending.indexOf(10, start); nl >= 0; nl = pending.indexOf(10, start)) {
      let end = nl;
      if (end > start && pending[end - 1] === 13) end--;
      const line = pending.subarray(start, end);
      start = nl + 1;
      // A blank line holds no document; it is still a row, counted under its own reason.
      yield line.toString("latin1").trim() === "" ? { row: row++, text: null, reason: "blank_line" } : parse(line);
    }
    pending = pending.subarray(start);
  }
  if (pending.length > 0 && pending.toString("latin1").trim() !== "") yield parse(pending);
}
