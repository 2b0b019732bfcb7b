/**
 * The disk estimate's ratios (src/pipeline/disk-estimate.ts) against real text: for each corpus in ../shared (the
 * fixture's English prose, Chinese poetry, code, math, and the GSM8K and HumanEval stand-ins), its files' bytes on
 * disk, the UTF-8 bytes of its text, and its DeepSeek tokens (the native tokenizer, as a build runs it); then text
 * per input byte and text bytes per token beside what the estimate assumes, and whether it over- or understates the
 * token chunks there. Deterministic: the same counts every run.
 *   node --import tsx bench/disk-ratios.ts
 */
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { DuckDBInstance } from "@duckdb/node-api";
import { TEXT_BYTES_PER_TOKEN, TEXT_PER_INPUT_BYTE } from "../src/pipeline/disk-estimate.ts";
import { parseTokenizerJson } from "../src/tokenizer/load.ts";
import { nativeTokenizer } from "../src/tokenizer/native.ts";
import { sharedHub, sharedTokenizer } from "../test/helpers/paths.ts";

const corpora: { name: string; files: string[]; read: (files: string) => string }[] = [
  { name: "en-prose (parquet)", files: ["datasets/fixture/en-prose/data/train-00000-of-00002.parquet", "datasets/fixture/en-prose/data/train-00001-of-00002.parquet"], read: (f) => `SELECT text FROM read_parquet(${f})` },
  { name: "zh-poetry (parquet)", files: ["datasets/fixture/zh-poetry/data/train-00000-of-00001.parquet"], read: (f) => `SELECT content FROM read_parquet(${f})` },
  { name: "code (jsonl.gz)", files: ["datasets/fixture/code/data/train.jsonl.gz"], read: (f) => `SELECT text FROM read_json(${f})` },
  { name: "math (parquet)", files: ["datasets/fixture/math/data/train-00000-of-00001.parquet"], read: (f) => `SELECT text FROM read_parquet(${f})` },
  { name: "gsm8k (parquet)", files: ["datasets/openai/gsm8k/main/train-00000-of-00001.parquet"], read: (f) => `SELECT question || '\n' || answer FROM read_parquet(${f})` },
  { name: "humaneval (parquet)", files: ["datasets/openai/openai_humaneval/openai_humaneval/test-00000-of-00001.parquet"], read: (f) => `SELECT prompt || canonical_solution FROM read_parquet(${f})` },
];

const { json, info } = parseTokenizerJson(readFileSync(sharedTokenizer, "utf8"), sharedTokenizer);
const tokenizer = nativeTokenizer(json, info, 1);
const conn = await (await DuckDBInstance.create(":memory:")).connect();
console.log(`estimate assumes: ${TEXT_PER_INPUT_BYTE.compressed} bytes of text per byte of a compressed file (gzip, parquet), ${TEXT_PER_INPUT_BYTE.plain} for plain; ${TEXT_BYTES_PER_TOKEN} bytes of text a token`);
console.log("| corpus | documents | file MB | text MB | tokens | text / file byte | text bytes / token | token chunks: estimate ÷ actual |");
console.log("|---|---:|---:|---:|---:|---:|---:|---:|");
for (const c of corpora) {
  const paths = c.files.map((f) => join(sharedHub, f));
  const fileBytes = paths.reduce((a, p) => a + statSync(p).size, 0);
  const list = `[${paths.map((p) => `'${p}'`).join(", ")}]`;
  const docs = ((await conn.runAndReadAll(c.read(list))).getRowsJS() as [string | null][]).map((r) => r[0]).filter((d): d is string => d !== null);
  const textBytes = docs.reduce((a, d) => a + Buffer.byteLength(d), 0);
  let tokens = 0;
  for (let i = 0; i < docs.length; i += 1024) tokens += (await tokenizer.encodeBatch(docs.slice(i, i + 1024))).ids.length;
  const perToken = textBytes / tokens;
  // The estimate's token chunks: 4 bytes a token at TEXT_BYTES_PER_TOKEN bytes of text a token, from the text it guesses.
  const guessedText = fileBytes * TEXT_PER_INPUT_BYTE.compressed;
  const estimate = (4 * guessedText) / TEXT_BYTES_PER_TOKEN;
  console.log(
    `| ${c.name} | ${docs.length} | ${(fileBytes / 1e6).toFixed(3)} | ${(textBytes / 1e6).toFixed(3)} | ${tokens} | ${(textBytes / fileBytes).toFixed(2)} | ${perToken.toFixed(2)} | ${(estimate / (4 * tokens)).toFixed(2)} |`,
  );
}
conn.closeSync();
