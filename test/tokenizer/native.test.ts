import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { DuckDBInstance } from "@duckdb/node-api";
import { Tokenizer as RustTokenizer } from "tokenizers";
import { parseTokenizerJson } from "../../src/tokenizer/load.ts";
import { nativeTokenizer } from "../../src/tokenizer/native.ts";
import { nativeTokenizerSpec, UnsupportedTokenizer } from "../../src/tokenizer/spec.ts";
import { fuzzDocuments } from "../helpers/fuzz-text.ts";
import { sharedDir, sharedHub, sharedTokenizer } from "../helpers/paths.ts";

const text = readFileSync(sharedTokenizer, "utf8");
const { json, info } = parseTokenizerJson(text, sharedTokenizer);
const native = nativeTokenizer(json, info, 2);
const rust = RustTokenizer.fromFile(sharedTokenizer);
const BYTE_LEVEL_ADDED = /[øöúÿõ÷ûýÀùÁþü]/;

async function mismatches(docs: string[]): Promise<string[]> {
  const expected = await rust.encodeBatch(docs, { addSpecialTokens: false });
  const got = await native.encodeBatch(docs);
  const bad: string[] = [];
  let at = 0;
  docs.forEach((doc, i) => {
    const n = got.lengths[i]!;
    const ids = got.ids.subarray(at, (at += n));
    if (ids.join() !== expected[i]!.getIds().join()) bad.push(JSON.stringify(doc).slice(0, 120));
  });
  return bad;
}

describe("native DeepSeek tokenizer against Hugging Face's Rust tokenizers", () => {
  it("matches the llama.cpp reference vectors", () => {
    const dir = join(sharedDir, "tokenizers", "deepseek-llm", "llamacpp-vocab");
    const inputs = readFileSync(join(dir, "ggml-vocab-deepseek-llm.gguf.inp"), "utf8").split("\n__ggml_vocab_test__\n");
    inputs.pop();
    const outputs = readFileSync(join(dir, "ggml-vocab-deepseek-llm.gguf.out"), "utf8").split("\n");
    inputs.forEach((input, i) => {
      const want = outputs[i]!.trim() ? outputs[i]!.trim().split(/\s+/).map(Number) : [];
      assert.deepEqual(native.encode(input), want, JSON.stringify(input));
    });
  });

  it("has zero mismatched documents on every corpus in the shared Hub", async () => {
    const conn = await (await DuckDBInstance.create(":memory:")).connect();
    const sources = [
      "read_parquet('datasets/fixture/en-prose/data/*.parquet')",
      "(SELECT content AS text FROM read_parquet('datasets/fixture/zh-poetry/data/*.parquet'))",
      "read_json('datasets/fixture/code/data/train.jsonl.gz')",
      "read_parquet('datasets/fixture/math/data/*.parquet')",
      "(SELECT question || '\\n' || A || '\\n' || B || '\\n' || C || '\\n' || D || '\\n' || answer AS text FROM read_parquet('datasets/fixture/mcq-zh/data/*.parquet'))",
      "(SELECT question || '\\n' || answer AS text FROM read_parquet('datasets/openai/gsm8k/main/*.parquet'))",
      "(SELECT prompt || canonical_solution || test AS text FROM read_parquet('datasets/openai/openai_humaneval/openai_humaneval/*.parquet'))",
    ];
    let total = 0;
    for (const from of sources) {
      const sql = `SELECT text FROM ${from.replace(/'datasets\//g, `'${sharedHub}/datasets/`)}`;
      const docs = ((await conn.runAndReadAll(sql)).getRowObjectsJS() as { text: string }[]).map((r) => r.text);
      assert.deepEqual(await mismatches(docs), [], from);
      total += docs.length;
    }
    conn.closeSync();
    assert.ok(total > 20000, `${total} documents`);
  });

  it("has zero mismatched documents on 100,000 seeded fuzz documents", async () => {
    const docs = fuzzDocuments(100_000, 20261126);
    for (let i = 0; i < docs.length; i += 25_000) {
      const bad = await mismatches(docs.slice(i, i + 25_000));
      assert.deepEqual(bad.slice(0, 5), [], `${bad.length} mismatches in batch ${i / 25_000}`);
    }
  });

  it("decodes like the Rust library, and round-trips valid UTF-8 without the byte-level added characters", async () => {
    const docs = fuzzDocuments(5_000, 7);
    for (const doc of docs) {
      const ids = native.encode(doc);
      const ours = native.decode(ids);
      assert.equal(ours, await rust.decode(ids, false), JSON.stringify(doc));
      const valid = !/[\ud800-\udfff]/.test(doc.replace(/[\ud800-\udbff][\udc00-\udfff]/g, "")); // no lone surrogates
      if (valid && !BYTE_LEVEL_ADDED.test(doc)) assert.equal(ours, doc);
    }
  });

  it("gives the same ids whatever the thread count", async () => {
    const docs = fuzzDocuments(3_000, 99);
    const one = nativeTokenizer(json, info, 1);
    const a = await one.encodeBatch(docs);
    const b = await native.encodeBatch(docs);
    assert.deepEqual(a.ids, b.ids);
    assert.deepEqual(a.lengths, b.lengths);
  });

  it("refuses features it does not implement, naming them", () => {
    const changed = (edit: (j: any) => void) => {
      const j = JSON.parse(text);
      edit(j);
      return () => nativeTokenizerSpec(j);
    };
    assert.throws(changed((j) => (j.normalizer = { type: "NFKC" })), (e: Error) => e instanceof UnsupportedTokenizer && /normalizer NFKC/.test(e.message));
    assert.throws(changed((j) => (j.pre_tokenizer.pretokenizers[1].pattern.Regex = "\\p{L}+")), /Split pattern "\\\\p\{L\}\+"/);
    assert.throws(changed((j) => (j.model.type = "Unigram")), /model type Unigram/);
    assert.throws(changed((j) => (j.added_tokens[0].lstrip = true)), /lstrip\/rstrip\/single_word/);
  });
});
