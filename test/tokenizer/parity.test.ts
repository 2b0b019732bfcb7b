import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { DuckDBInstance } from "@duckdb/node-api";
import { Tokenizer as JsTokenizer } from "@huggingface/tokenizers";
import { Tokenizer as RustTokenizer } from "tokenizers";
import { tokenizerFromText } from "../../src/tokenizer/load.ts";
import { sharedDir, sharedHub, sharedTokenizer } from "../helpers/paths.ts";

const tokenizerText = readFileSync(sharedTokenizer, "utf8");
const js = tokenizerFromText(tokenizerText, sharedTokenizer);
const rust = RustTokenizer.fromFile(sharedTokenizer);

async function rustIds(text: string): Promise<number[]> {
  return (await rust.encode(text, null, { addSpecialTokens: false })).getIds();
}

/** llama.cpp's vocab test format: inputs separated by a marker line, one line of ids per input. */
function referenceVectors(): { input: string; ids: number[] }[] {
  const dir = join(sharedDir, "tokenizers", "deepseek-llm", "llamacpp-vocab");
  const inputs = readFileSync(join(dir, "ggml-vocab-deepseek-llm.gguf.inp"), "utf8").split("\n__ggml_vocab_test__\n");
  inputs.pop(); // the file ends with a marker
  const outputs = readFileSync(join(dir, "ggml-vocab-deepseek-llm.gguf.out"), "utf8").split("\n");
  return inputs.map((input, i) => ({ input, ids: outputs[i]!.trim() ? outputs[i]!.trim().split(/\s+/).map(Number) : [] }));
}

describe("DeepSeek tokenizer parity", () => {
  it("matches Hugging Face's reference ids on every llama.cpp vector", () => {
    const vectors = referenceVectors();
    assert.equal(vectors.length, 46);
    for (const v of vectors) assert.deepEqual(js.encode(v.input), v.ids, JSON.stringify(v.input));
  });

  it("splits Unicode numerals one by one, as Rust's Digits does (the unpatched JS library does not)", async () => {
    const unpatched = new JsTokenizer(JSON.parse(tokenizerText), {});
    const raw = unpatched.encode("ied 4 ½ months", { add_special_tokens: false }).ids;
    assert.notDeepEqual(raw, await rustIds("ied 4 ½ months"), "the Digits patch is still needed");
    for (const text of ["ied 4 ½ months", "½ of 2² is ٣", "Ⅻ and ① and 𝟙", "x\u3000y 12345"]) {
      assert.deepEqual(js.encode(text), await rustIds(text), text);
    }
  });

  it("knows EOS 100001 and BOS 100000", () => {
    assert.equal(js.eosId, 100001);
    assert.equal(js.bosId, 100000);
  });

  it("gives the Rust library's ids on every document of the fixture corpora", async () => {
    const instance = await DuckDBInstance.create(":memory:");
    const conn = await instance.connect();
    const corpora = [
      ["datasets/fixture/en-prose/data/*.parquet", "text"],
      ["datasets/fixture/zh-poetry/data/*.parquet", "content"],
      ["datasets/fixture/math/data/*.parquet", "text"],
      ["datasets/fixture/mcq-zh/data/*.parquet", "question || ' ' || A || ' ' || B || ' ' || C || ' ' || D"],
      ["datasets/openai/openai_humaneval/openai_humaneval/*.parquet", "prompt || canonical_solution"],
      ["datasets/fixture/code/data/train.jsonl.gz", "text"],
    ] as const;
    let checked = 0;
    for (const [glob, expr] of corpora) {
      const path = join(sharedHub, glob);
      const source = path.endsWith(".gz") ? `read_json('${path}')` : `read_parquet('${path}')`;
      const rows = (await conn.runAndReadAll(`SELECT ${expr} AS t FROM ${source}`)).getRowObjectsJS() as { t: string }[];
      const texts = rows.map((r) => r.t);
      const expected = await rust.encodeBatch(texts, { addSpecialTokens: false });
      texts.forEach((t, i) => {
        const got = js.encode(t);
        if (got.join() !== expected[i]!.getIds().join()) assert.fail(`${glob} row ${i}: ids differ from the Rust tokenizer`);
      });
      checked += texts.length;
    }
    conn.closeSync();
    assert.ok(checked > 12000, `checked ${checked} documents`);
  });
});
