/**
 * Tokenizer throughput on the shared corpora (English prose, Chinese poetry, code, math, Chinese MCQ,
 * GSM8K, HumanEval): native vs Hugging Face's Rust `tokenizers` vs `@huggingface/tokenizers` (JS),
 * one thread and all cores, in one run. Checks that all three give the same ids.
 *   node --import tsx bench/tokenize.ts [--repeat 2]
 */
import { readFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { DuckDBInstance } from "@duckdb/node-api";
import { Tokenizer as RustTokenizer } from "tokenizers";
import type { TokenizeResult } from "../src/pipeline/stages/tokenize-worker.ts";
import { parseTokenizerJson, tokenizerFromText } from "../src/tokenizer/load.ts";
import { nativeTokenizer } from "../src/tokenizer/native.ts";
import { startTsWorker } from "../src/util/workers.ts";
import { sharedHub, sharedTokenizer } from "../test/helpers/paths.ts";

const { values } = parseArgs({ options: { repeat: { type: "string", default: "2" } } });
const cores = cpus().length;
const conn = await (await DuckDBInstance.create(":memory:")).connect();
const h = (p: string) => `'${join(sharedHub, p)}'`;
const sql = [
  `SELECT text FROM read_parquet(${h("datasets/fixture/en-prose/data/*.parquet")})`,
  `SELECT content FROM read_parquet(${h("datasets/fixture/zh-poetry/data/*.parquet")})`,
  `SELECT text FROM read_json(${h("datasets/fixture/code/data/train.jsonl.gz")})`,
  `SELECT text FROM read_parquet(${h("datasets/fixture/math/data/*.parquet")})`,
  `SELECT question || A || B || C || D FROM read_parquet(${h("datasets/fixture/mcq-zh/data/*.parquet")})`,
  `SELECT question || '\n' || answer FROM read_parquet(${h("datasets/openai/gsm8k/main/*.parquet")})`,
  `SELECT prompt || canonical_solution FROM read_parquet(${h("datasets/openai/openai_humaneval/openai_humaneval/*.parquet")})`,
].join(" UNION ALL ");
const docs = ((await conn.runAndReadAll(sql)).getRowsJS() as [string][]).map((r) => r[0]);
conn.closeSync();
const bytes = docs.reduce((a, d) => a + Buffer.byteLength(d), 0);
const text = readFileSync(sharedTokenizer, "utf8");
const { json, info } = parseTokenizerJson(text, sharedTokenizer);

async function time(run: () => Promise<number>): Promise<{ seconds: number; tokens: number }> {
  let best = Infinity;
  let tokens = 0;
  for (let r = 0; r < Number(values.repeat); r++) {
    const t0 = performance.now();
    tokens = await run();
    best = Math.min(best, (performance.now() - t0) / 1000);
  }
  return { seconds: best, tokens };
}

const rust = RustTokenizer.fromString(text);
const js = tokenizerFromText(text, sharedTokenizer);
const native1 = nativeTokenizer(json, info, 1);
const nativeN = nativeTokenizer(json, info, cores);
const batches = (size: number) => Array.from({ length: Math.ceil(docs.length / size) }, (_, i) => docs.slice(i * size, (i + 1) * size));

async function jsPool(): Promise<number> {
  const workers = Array.from({ length: cores }, () => startTsWorker(new URL("../src/pipeline/stages/tokenize-worker.ts", import.meta.url), { tokenizerJson: text, tokenizerPath: sharedTokenizer }));
  await Promise.all(workers.map((w) => new Promise((r) => w.once("message", r))));
  const parts = batches(Math.ceil(docs.length / cores));
  const results = await Promise.all(parts.map((texts, i) => new Promise<TokenizeResult>((r) => {
    workers[i]!.once("message", r);
    workers[i]!.postMessage({ chunk: i, texts });
  })));
  await Promise.all(workers.map((w) => w.terminate()));
  return results.reduce((a, r) => a + r.ids.length, 0);
}

const rows: [string, { seconds: number; tokens: number }][] = [];
rows.push(["native, 1 thread", await time(async () => { let n = 0; for (const b of batches(1024)) n += (await native1.encodeBatch(b)).ids.length; return n; })]);
rows.push([`native, ${cores} threads`, await time(async () => { let n = 0; for (const b of batches(1024)) n += (await nativeN.encodeBatch(b)).ids.length; return n; })]);
rows.push(["rust, 1 thread (one document at a time)", await time(async () => { let n = 0; for (const d of docs) n += (await rust.encode(d, null, { addSpecialTokens: false })).getIds().length; return n; })]);
rows.push([`rust, encodeBatch (${cores} cores)`, await time(async () => { let n = 0; for (const b of batches(1024)) for (const e of await rust.encodeBatch(b, { addSpecialTokens: false })) n += e.getIds().length; return n; })]);
rows.push(["js, 1 thread", await time(async () => docs.reduce((n, d) => n + js.encode(d).length, 0))]);
rows.push([`js, ${cores} worker threads`, await time(jsPool)]);

const tokenCounts = new Set(rows.map(([, r]) => r.tokens));
console.log(`corpus: ${docs.length} documents, ${(bytes / 1e6).toFixed(2)} MB; best of ${values.repeat}; ${cores} cores; same token count everywhere: ${tokenCounts.size === 1}`);
console.log("| implementation | MB/s | tokens/s | vs rust, 1 thread |");
console.log("|---|---:|---:|---:|");
const rust1 = rows[2]![1].seconds;
for (const [name, r] of rows) {
  console.log(`| ${name} | ${(bytes / 1e6 / r.seconds).toFixed(2)} | ${(r.tokens / r.seconds / 1e6).toFixed(2)}M | ${(rust1 / r.seconds).toFixed(2)}× |`);
}
console.log(`native scaling from 1 to ${cores} threads: ${(rows[0]![1].seconds / rows[1]![1].seconds).toFixed(2)}×`);
