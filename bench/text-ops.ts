/**
 * What the near-dedup and quality stages cost per byte, against the tokenizer on the same texts in the same run
 * (the stage every build has): each quality preset alone and all four, MinHash band keys (14 × 8, 5-word
 * shingles), and the shingle Jaccard of verification, all on one thread. The texts: the first --docs documents of
 * a JSON-lines corpus (bench/build-memory.sh PROSE=1 writes one), or the shared English prose fixture.
 *   node --import tsx bench/text-ops.ts [--corpus corpus.jsonl] [--docs 30000] [--repeat 3]
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { DuckDBInstance } from "@duckdb/node-api";
import { loadAddon } from "../src/native/addon.ts";
import { prepareForShingles } from "../src/pipeline/stages/near-dedup-text.ts";
import { QUALITY_PARAMS, QUALITY_PRESET_BITS } from "../src/recipe/quality-presets.ts";
import { parseTokenizerJson } from "../src/tokenizer/load.ts";
import { nativeTokenizer } from "../src/tokenizer/native.ts";
import { sharedHub, sharedTokenizer } from "../test/helpers/paths.ts";

const { values } = parseArgs({ options: { corpus: { type: "string" }, docs: { type: "string", default: "30000" }, repeat: { type: "string", default: "3" } } });
const limit = Number(values.docs);
let docs: string[];
if (values.corpus) {
  docs = readFileSync(values.corpus, "utf8").split("\n").filter(Boolean).slice(0, limit).map((l) => JSON.parse(l).text as string);
} else {
  const conn = await (await DuckDBInstance.create(":memory:")).connect();
  const sql = `SELECT text FROM read_parquet('${join(sharedHub, "datasets/fixture/en-prose/data/*.parquet")}') LIMIT ${limit}`;
  docs = ((await conn.runAndReadAll(sql)).getRowsJS() as [string][]).map((r) => r[0]);
  conn.closeSync();
}
const mb = docs.reduce((a, d) => a + Buffer.byteLength(d), 0) / 1e6;

/** The best of --repeat runs, in seconds. */
async function best(run: () => Promise<unknown>): Promise<number> {
  let s = Infinity;
  for (let i = 0; i < Number(values.repeat); i++) {
    const t0 = performance.now();
    await run();
    s = Math.min(s, (performance.now() - t0) / 1000);
  }
  return s;
}

const addon = loadAddon();
const { json, info } = parseTokenizerJson(readFileSync(sharedTokenizer, "utf8"), sharedTokenizer);
const tokenizer = nativeTokenizer(json, info, 1);
const batches = Array.from({ length: Math.ceil(docs.length / 1024) }, (_, i) => docs.slice(i * 1024, (i + 1) * 1024));
const tokenize = await best(async () => {
  for (const b of batches) await tokenizer.encodeBatch(b);
});

const rows: [string, number][] = [["tokenize (the peer)", tokenize]];
const params = Float64Array.from(QUALITY_PARAMS, (q) => q.default);
const all = Object.values(QUALITY_PRESET_BITS).reduce((a, b) => a | b, 0);
for (const [name, bits] of [...Object.entries(QUALITY_PRESET_BITS), ["all four presets", all]] as [string, number][]) {
  const masks = new Uint8Array(docs.length).fill(bits);
  rows.push([`quality: ${name}`, await best(() => addon.qualityCheck(docs, masks, params, 1))]);
}
const prepared = docs.map(prepareForShingles);
const spec = { ngram: 5, bands: 14, rows: 8, seed: 1 };
rows.push(["MinHash band keys (14 × 8)", await best(() => addon.minhashBands(prepared, spec, 1))]);
const half = Math.floor(prepared.length / 2);
rows.push(["shingle Jaccard of pairs (both texts)", await best(() => addon.shingleJaccard(prepared.slice(0, half), prepared.slice(half, 2 * half), spec, 1))]);

console.log(`${docs.length} documents, ${mb.toFixed(1)} MB${values.corpus ? ` of ${values.corpus}` : " of fixture/en-prose"}; one thread; best of ${values.repeat}\n`);
console.log("| operation | MB/s | time against tokenize |\n|---|---:|---:|");
for (const [name, s] of rows) console.log(`| ${name} | ${(mb / s).toFixed(1)} | ${(s / tokenize).toFixed(2)} |`);
