/**
 * Recall and precision of near-dedup on a corpus with planted near-duplicates (bench/build-memory.sh with NEAR=f
 * writes corpus.jsonl and near-truth.jsonl): each planted pair's true 5-word-shingle Jaccard, with the tool's own
 * words (near-dedup-text.ts), against what the build removed (its OUT/.work/build.duckdb: near_duplicates, and
 * duplicates for exact copies). Precision: of the rows removed as near-duplicates, the share whose true Jaccard with
 * the document kept for them is above 0.5.
 *   node --import tsx bench/near-dups-eval.ts WORK     (WORK: the folder holding corpus.jsonl, near-truth.jsonl, out/)
 */
import { createReadStream, readFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { DuckDBInstance } from "@duckdb/node-api";
import { jaccard, shingleSet, shingleWords } from "../src/pipeline/stages/near-dedup-text.ts";

const work = process.argv[2]!;
const truth = readFileSync(join(work, "near-truth.jsonl"), "utf8").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as { row: number; original: number; rate: number });
const conn = await (await DuckDBInstance.create(join(work, "out", ".work", "build.duckdb"), { access_mode: "READ_ONLY" })).connect();
const query = async <T>(sql: string) => (await conn.runAndReadAll(sql)).getRowObjectsJS() as T[];
const near = new Map((await query<{ row: bigint; kept: bigint }>(`SELECT row_idx AS row, kept_row AS kept FROM near_duplicates`)).map((r) => [Number(r.row), Number(r.kept)]));
const exact = new Set((await query<{ row: bigint }>(`SELECT row_idx AS row FROM duplicates`)).map((r) => Number(r.row)));
const wanted = new Set([...truth.flatMap((t) => [t.row, t.original]), ...near.keys(), ...near.values()]);
const texts = new Map<number, string>();
let rows = 0;
for await (const line of createInterface({ input: createReadStream(join(work, "corpus.jsonl")) })) {
  if (wanted.has(rows)) texts.set(rows, JSON.parse(line).text);
  rows++;
}
const j = (a: number, b: number) => jaccard(shingleSet(shingleWords(texts.get(a)!), 5), shingleSet(shingleWords(texts.get(b)!), 5));
const bins = { high: { pairs: 0, near: 0, exact: 0 }, between: { pairs: 0, near: 0, exact: 0 }, low: { pairs: 0, near: 0, exact: 0 } };
for (const t of truth) {
  const v = j(t.row, t.original);
  const bin = bins[v >= 0.8 ? "high" : v > 0.5 ? "between" : "low"];
  bin.pairs++;
  if (near.has(t.row) || near.has(t.original)) bin.near++;
  else if (exact.has(t.row)) bin.exact++;
}
let true_ = 0;
let atOrUnderHalf = 0;
for (const [row, kept] of near) {
  if (j(row, kept) > 0.5) true_++;
  else atOrUnderHalf++;
}
const pct = (a: number, b: number) => (b ? `${((100 * a) / b).toFixed(2)}%` : "n/a");
console.log(`rows ${rows}; planted pairs ${truth.length}; removed as near-duplicates ${near.size}, as exact copies ${exact.size}`);
console.log(`  J >= 0.8:      ${bins.high.pairs} pairs, ${bins.high.near} reduced to one copy by near-dedup: recall ${pct(bins.high.near, bins.high.pairs)}`);
console.log(`  0.5 < J < 0.8: ${bins.between.pairs} pairs, ${bins.between.near} reduced`);
console.log(`  J <= 0.5:      ${bins.low.pairs} pairs, ${bins.low.near} reduced (false positives)`);
console.log(`  precision: ${pct(true_, near.size)} of the near-duplicates removed are at J > 0.5 with the document kept for them (${atOrUnderHalf} at J <= 0.5)`);
