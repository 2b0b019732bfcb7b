import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { after, before, describe, it } from "node:test";
import { DuckDBInstance } from "@duckdb/node-api";
import { runCli } from "../helpers/cli.ts";
import { sharedTokenizer } from "../helpers/paths.ts";

/** A recipe over local files, with the shared tokenizer, so no Hub is involved. */
function recipe(sources: string, extra = ""): string {
  return `name: local\nseed: 3\nsequence_length: 64\ntokenizer:\n  path: ${sharedTokenizer}\n${extra}sources:\n${sources}`;
}

function assertNothingComplete(out: string): void {
  assert.ok(!existsSync(join(out, "manifest.json")), "no manifest after a failed build");
}

describe("bad input: counted, or refused with a clear message and nothing that looks complete", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "chuxin-bad-"));
    await mkdir(join(dir, "data"));
    const good = Array.from({ length: 30 }, (_, i) => JSON.stringify({ text: `Document number ${i} says something about topic ${i % 7}.` }));
    const lines = [
      ...good,
      "{not json",
      JSON.stringify({ text: null }),
      JSON.stringify({ text: 42 }),
      JSON.stringify({ text: "   \t " }),
      JSON.stringify({ other: "no text field" }),
      "",
      JSON.stringify({ text: good[0] ? JSON.parse(good[0]).text : "" }), // an exact duplicate
      JSON.stringify({ text: "  " + JSON.parse(good[1]!).text + "\n" }), // a duplicate once trimmed
    ];
    const buf = Buffer.concat([Buffer.from(lines.join("\n") + "\n"), Buffer.from([0x7b, 0x22, 0x74, 0x65, 0x78, 0x74, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d, 0x0a])]);
    await writeFile(join(dir, "data", "mixed.jsonl.gz"), gzipSync(buf));
    const db = await DuckDBInstance.create(":memory:");
    const conn = await db.connect();
    await conn.run(`COPY (SELECT 'row ' || i AS body, i AS id FROM range(20) t(i)) TO '${join(dir, "data", "nocol.parquet")}' (FORMAT parquet)`);
    // Text stored as bytes: two valid rows, one invalid UTF-8, one null.
    await conn.run(
      `COPY (SELECT * FROM (VALUES (0, 'A first document stored as bytes.'::BLOB), (1, '\\xFF\\xFE broken'::BLOB), (2, NULL::BLOB), (3, 'Second valid one, also bytes.'::BLOB)) t(id, text))
       TO '${join(dir, "data", "bytes.parquet")}' (FORMAT parquet)`,
    );
    conn.closeSync();
    await writeFile(join(dir, "data", "broken.parquet"), "PAR1 this is not parquet");
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  it("counts every skipped row by reason, and dedups after trimming", async () => {
    const path = join(dir, "ok.yaml");
    await writeFile(path, recipe(`  - name: mixed\n    weight: 1\n    local: { files: ["data/*.jsonl.gz"] }\n`, "target_tokens: 500\nlicense: cc-by-4.0\n"));
    const out = join(dir, "out-ok");
    const r = await runCli(["build", path, "--out", out]);
    assert.equal(r.code, 0, r.stderr);
    // The recipe's license is the card's.
    assert.match(await readFile(join(out, "README.md"), "utf8"), /^---\npretty_name: "local"\nlicense: cc-by-4\.0\n/);
    const s = JSON.parse(await readFile(join(out, "manifest.json"), "utf8")).sources[0];
    assert.equal(s.documents_read, 39);
    assert.deepEqual(
      Object.fromEntries(Object.entries(s.documents_skipped).filter(([, n]) => n !== 0)),
      { malformed_json: 1, null_text: 2, text_not_string: 1, empty_text: 1, blank_line: 1, invalid_utf8: 1 },
    );
    assert.equal(s.duplicates_removed.within_source, 2);
    assert.equal(s.documents_available, 30);
    // Each skipped line by its row (0-based, as in the document indexes), in the manifest and the first few on the terminal.
    const at = (...rows: number[]) => rows.map((row) => ({ file: "data/mixed.jsonl.gz", row }));
    assert.deepEqual(s.skipped_rows, {
      blank_line: at(35),
      empty_text: at(33),
      invalid_utf8: at(38),
      malformed_json: at(30),
      null_text: at(31, 34),
      text_not_string: at(32),
    });
    assert.match(
      r.stderr,
      /source 'mixed': 7 row\(s\) skipped; first: data\/mixed\.jsonl\.gz row 30 \(malformed_json\), data\/mixed\.jsonl\.gz row 31 \(null_text\), data\/mixed\.jsonl\.gz row 32 \(text_not_string\), data\/mixed\.jsonl\.gz row 33 \(empty_text\), data\/mixed\.jsonl\.gz row 34 \(null_text\), … \(rows count from 0/,
    );
  });

  it("decodes a bytes (BLOB) text column, counting invalid UTF-8 rows", async () => {
    const path = join(dir, "bytes.yaml");
    await writeFile(path, recipe(`  - name: b\n    weight: 1\n    local: { files: ["data/bytes.parquet"] }\n`));
    const out = join(dir, "out-bytes");
    const r = await runCli(["build", path, "--out", out]);
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(await readFile(join(out, "manifest.json"), "utf8")).sources[0];
    assert.equal(s.documents_read, 4);
    assert.equal(s.documents_skipped.invalid_utf8, 1);
    assert.equal(s.documents_skipped.null_text, 1);
    assert.equal(s.documents_available, 2);
  });

  it("names the columns a file has when the text column is missing (exit 2)", async () => {
    const path = join(dir, "nocol.yaml");
    await writeFile(path, recipe(`  - name: p\n    weight: 1\n    local: { files: ["data/nocol.parquet"] }\n`));
    const out = join(dir, "out-nocol");
    const r = await runCli(["build", path, "--out", out]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /:\d+:\d+: source 'p': data\/nocol\.parquet: text column 'text', which is not a column; the file has: body, id; set text_column to one of them/);
    assertNothingComplete(out);
  });

  it("refuses a JSON lines text_column no line has at ingest, and a glob that matches nothing, with file:line:col and the nearest name (exit 2)", async () => {
    const path = join(dir, "wrongcol.yaml");
    await writeFile(path, recipe(`  - name: m\n    weight: 1\n    local: { files: ["data/*.jsonl.gz"] }\n    text_column: txt\n`));
    const out = join(dir, "out-wrongcol");
    const r = await runCli(["build", path, "--out", out]);
    assert.equal(r.code, 2, r.stderr);
    // Before tokenising: not 30 rows of null_text.
    assert.match(r.stderr, /wrongcol\.yaml:10:18: source 'm': data\/mixed\.jsonl\.gz: text column 'txt', which is a field of no line; the lines have: text, other \(did you mean 'text'\?\); set text_column to one of them/);
    assert.doesNotMatch(r.stderr, /tokenize:/);
    assertNothingComplete(out);
    const glob = join(dir, "glob.yaml");
    await writeFile(glob, recipe(`  - name: g\n    weight: 1\n    local: { files: ["data/mixd.jsonl.gz"] }\n`));
    const g = await runCli(["build", glob, "--out", join(dir, "out-glob")]);
    assert.equal(g.code, 2, g.stderr);
    assert.match(g.stderr, /glob\.yaml:9:\d+: source 'g': local\.files \["data\/mixd\.jsonl\.gz"\] match no file under .* \(did you mean 'data\/mixed\.jsonl\.gz'\?\)/);
  });

  it("stops on a file that cannot be read at all (exit 1), naming it", async () => {
    const path = join(dir, "broken.yaml");
    await writeFile(path, recipe(`  - name: b\n    weight: 1\n    local: { files: ["data/broken.parquet"] }\n`));
    const out = join(dir, "out-broken");
    const r = await runCli(["build", path, "--out", out]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /source 'b': data\/broken\.parquet: cannot be read as parquet/);
    assertNothingComplete(out);
  });

  it("refuses a recipe with a typo before touching anything (exit 2, file:line:col)", async () => {
    const path = join(dir, "typo.yaml");
    await writeFile(path, recipe(`  - name: t\n    weight: 1\n    local: { files: ["data/*.jsonl.gz"] }\n    text_colum: text\n`));
    const out = join(dir, "out-typo");
    const r = await runCli(["build", path, "--out", out]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /typo\.yaml:10:5: sources\[0\]\.text_colum: unknown key 'text_colum' — did you mean 'text_column'\?/);
    assert.ok(!existsSync(out));
  });

  it("refuses a target that needs more epochs than allowed (exit 2), naming the source", async () => {
    const path = join(dir, "epochs.yaml");
    await writeFile(path, recipe(`  - name: small\n    weight: 1\n    local: { files: ["data/*.jsonl.gz"] }\n`, "target_tokens: 100000\n"));
    const out = join(dir, "out-epochs");
    const r = await runCli(["build", path, "--out", out]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /source 'small': target_tokens gives it 100000 tokens but it has \d+; that needs [\d.]+ epochs, over max_epochs 4/);
    assertNothingComplete(out);
    assert.ok(!(await readdir(out)).some((n) => n.endsWith(".npy")));
  });

  it("falls back to the library tokenizer, saying so once, when the native one lacks a feature", async () => {
    const tok = JSON.parse(await readFile(sharedTokenizer, "utf8"));
    tok.normalizer = { type: "NFC" };
    const tokPath = join(dir, "tokenizer-nfc.json");
    await writeFile(tokPath, JSON.stringify(tok));
    const path = join(dir, "nfc.yaml");
    await writeFile(path, recipe(`  - name: mixed\n    weight: 1\n    local: { files: ["data/*.jsonl.gz"] }\n`).replace(sharedTokenizer, tokPath));
    const out = join(dir, "out-nfc");
    const r = await runCli(["build", path, "--out", out, "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const notes = r.stdout.split("\n").filter(Boolean).map((l) => JSON.parse(l)).filter((e) => e.type === "note" && /tokenizer/.test(e.message));
    assert.equal(notes.length, 1, "the fallback is said once");
    assert.match(notes[0].message, /native tokenizer unavailable \(normalizer NFC\); using @huggingface\/tokenizers/);
    const m = JSON.parse(await readFile(join(out, "manifest.json"), "utf8"));
    assert.match(m.tokenizer.implementation, /^@huggingface\/tokenizers/);
  });

  it("answers unknown commands and missing arguments with usage errors (exit 2)", async () => {
    const r = await runCli(["frobnicate"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /Unknown argument|Unknown command/i);
    const v = await runCli(["verify", join(dir, "nowhere")]);
    assert.equal(v.code, 2);
    assert.match(v.stderr, /no manifest; .* is not a finished chuxin-data build/);
  });
});
