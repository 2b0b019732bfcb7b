import assert from "node:assert/strict";
import { createWriteStream } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { readJsonl } from "../../src/pipeline/jsonl.ts";

const textField = [{ field: "text" }] as const;

async function rows(path: string) {
  const out = [];
  for await (const row of readJsonl(path, textField)) out.push(row);
  return out;
}

describe("JSON lines reader", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "chuxin-jsonl-"));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  it("numbers rows across CRLF, blank lines and a last line without a newline", async () => {
    const path = join(dir, "mixed.jsonl");
    await writeFile(path, '{"text":"a"}\r\n\r\n  \n{"text":"b"}\n{"text":"c"}');
    assert.deepEqual(await rows(path), [
      { row: 0, text: "a", reason: null },
      { row: 1, text: null, reason: "blank_line" },
      { row: 2, text: null, reason: "blank_line" },
      { row: 3, text: "b", reason: null },
      { row: 4, text: "c", reason: null },
    ]);
  });

  // Joining the pending bytes on every 64 KiB chunk made one long line quadratic: 52 MB took 299 s. Read
  // linearly, 40 MB (600+ chunks) takes about a second; the limit only catches a return of the quadratic path.
  it("reads a 40 MB line, and one with no final newline, in linear time", { timeout: 30_000 }, async () => {
    const body = "x".repeat(1 << 20);
    for (const [name, newline] of [["long.jsonl", "\n"], ["long-nonl.jsonl", ""]] as const) {
      const path = join(dir, name);
      const out = createWriteStream(path);
      out.write('{"text":"');
      for (let i = 0; i < 40; i++) out.write(body);
      out.write(`"}${newline}`);
      await new Promise<void>((resolve, reject) => out.end(() => resolve()).on("error", reject));
      const got = await rows(path);
      assert.equal(got.length, 1);
      assert.equal(got[0]!.text!.length, 40 << 20);
    }
  });
});
