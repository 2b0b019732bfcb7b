import assert from "node:assert/strict";
import { createWriteStream } from "node:fs";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { readJsonl } from "../../../../src/pipeline/stages/readers/jsonl.ts";

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

  // Joining the pending bytes on every chunk made one long line quadratic (a 52 MB line took 299 s; gunzip's 16 KiB
  // chunks make it worst). Read linearly, 48 MB of gzipped JSON lines take about a second here; the limit only
  // catches a return of the quadratic path, which needs minutes.
  it("reads a 48 MB line (gzipped, with and without a final newline) in linear time", { timeout: 20_000 }, async () => {
    const body = "x".repeat(1 << 20);
    for (const [name, newline] of [["long.jsonl.gz", "\n"], ["long-nonl.jsonl.gz", ""]] as const) {
      const path = join(dir, name);
      const gzip = createGzip({ level: 1 });
      const done = pipeline(gzip, createWriteStream(path));
      gzip.write('{"text":"');
      for (let i = 0; i < 48; i++) gzip.write(body);
      gzip.end(`"}${newline}`);
      await done;
      const got = await rows(path);
      assert.equal(got.length, 1);
      assert.equal(got[0]!.text!.length, 48 << 20);
    }
  });
});
