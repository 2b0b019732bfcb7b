/** `eval --needle`: the grid of lengths × depths on one checkpoint, its results file and heatmap. */
import { join, resolve } from "node:path";
import { UsageError } from "../util/errors.ts";
import { writeFileAtomic } from "../util/atomic.ts";
import { runOptionsOf } from "../train/trainer.ts";
import { needleHeatmapSvg } from "../train/plot.ts";
import type { LoadedCheckpoint } from "./checkpoint.ts";
import { checkpointTokenizer } from "./generate.ts";
import { ANSWER_TOKENS, answerCell, haystackTokens, NEEDLE, needleNumber, needlePrompt, QUESTION, scoreAnswer, type NeedleCell } from "./needle.ts";

export interface NeedleRunOptions {
  lengths: number[];
  depths: number[];
  seed: number;
  /** a build folder or a text file */
  haystack: string;
  /** where needle.json and needle.svg go */
  outDir: string;
}

export interface NeedleResults {
  checkpoint: string;
  haystack: { source: string; tokens: number };
  seed: number;
  needle: string;
  question: string;
  lengths: number[];
  depths: number[];
  /** share of cells found: in all, and per length */
  accuracy: number;
  by_length: Record<string, number>;
  cells: NeedleCell[];
}

/** Lengths as people write them for contexts: 1K is 1,024 tokens, 1M 1,048,576. */
export function parseLengths(text: string): number[] {
  return text.split(",").map((part) => {
    const m = part.trim().match(/^(\d+)\s*([KM]?)$/i);
    const n = m ? Number(m[1]) * (m[2]!.toUpperCase() === "K" ? 1024 : m[2]!.toUpperCase() === "M" ? 1 << 20 : 1) : NaN;
    if (!Number.isSafeInteger(n) || n < 1) throw new UsageError(`--lengths ${text}: '${part}' is not a length in tokens (e.g. 1K,2K,4K or 4096)`);
    return n;
  });
}

export function parseDepths(text: string): number[] {
  return text.split(",").map((part) => {
    const d = Number(part.trim());
    if (part.trim() === "" || !(d >= 0 && d <= 1)) throw new UsageError(`--depths ${text}: '${part}' is not a depth between 0 and 1 (e.g. 0,0.25,0.5,0.75,1)`);
    return d;
  });
}

/** The default lengths: 1K, 2K, 4K … while a prompt and its answer fit the model's positions. */
export function defaultLengths(maxSeq: number): number[] {
  const out: number[] = [];
  for (let n = 1024; n + ANSWER_TOKENS <= maxSeq; n *= 2) out.push(n);
  return out.length ? out : [maxSeq - ANSWER_TOKENS];
}

/** Every bad input is refused before the first cell runs: lengths past the positions, a haystack too short. */
export async function runNeedle(ckpt: LoadedCheckpoint, o: NeedleRunOptions, onCell?: (cell: NeedleCell, done: number, total: number) => void): Promise<NeedleResults> {
  const longest = Math.max(...o.lengths);
  if (longest + ANSWER_TOKENS > ckpt.config.maxSeq) {
    throw new UsageError(
      `--lengths ${longest}: a prompt of ${longest} tokens and its answer (${ANSWER_TOKENS}) go past the model's ${ckpt.config.maxSeq} positions; use lengths up to ${ckpt.config.maxSeq - ANSWER_TOKENS}`,
    );
  }
  const tokenizer = await checkpointTokenizer(ckpt);
  const question = tokenizer.encode(QUESTION);
  const haystack = await haystackTokens(resolve(o.haystack), tokenizer, longest, { eosId: ckpt.eosId, bosId: ckpt.bosId });
  // The whole length in haystack tokens: more than any cell takes, whatever its needle's tokens.
  const need = longest - question.length;
  if (haystack.length < need) {
    throw new UsageError(`--haystack ${o.haystack}: ${haystack.length.toLocaleString("en-US")} tokens of text, but length ${longest.toLocaleString("en-US")} needs ${need.toLocaleString("en-US")}; give a longer text or build, or shorter --lengths`);
  }
  const run = runOptionsOf(ckpt.run, ckpt.eosId);
  const cells: NeedleCell[] = [];
  const total = o.lengths.length * o.depths.length;
  for (const length of o.lengths) {
    for (const depth of o.depths) {
      const number = needleNumber(o.seed, length, depth);
      const { ids, needleAt } = needlePrompt(haystack, tokenizer.encode(NEEDLE(number)), question, length, depth);
      const answer = await answerCell(ckpt.model, tokenizer, ids, { run, eosId: ckpt.eosId, vocab: tokenizer.vocabSize });
      const cell = { length, depth, prompt_tokens: ids.length, needle_at: needleAt, number, answer, correct: scoreAnswer(answer, number) };
      cells.push(cell);
      onCell?.(cell, cells.length, total);
    }
  }
  const share = (cs: NeedleCell[]) => cs.filter((c) => c.correct).length / Math.max(1, cs.length);
  const results: NeedleResults = {
    checkpoint: ckpt.dir,
    haystack: { source: o.haystack, tokens: haystack.length },
    seed: o.seed,
    needle: NEEDLE("<7 digits>").trim(),
    question: QUESTION.trim(),
    lengths: o.lengths,
    depths: o.depths,
    accuracy: share(cells),
    by_length: Object.fromEntries(o.lengths.map((l) => [String(l), share(cells.filter((c) => c.length === l))])),
    cells,
  };
  await writeFileAtomic(join(o.outDir, "needle.json"), JSON.stringify(results, null, 2) + "\n");
  await writeFileAtomic(join(o.outDir, "needle.svg"), needleHeatmapSvg(cells.map((c) => ({ length: c.length, depth: c.depth, score: c.correct ? 1 : 0 })), `needle in a haystack: ${ckpt.dir.split("/").slice(-2).join("/")}`));
  return results;
}
