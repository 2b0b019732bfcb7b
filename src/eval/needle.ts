/**
 * Needle in a haystack (`eval --needle`), as EasyContext and LWM run it: a sentence holding a random 7-digit number
 * is put at each depth of a haystack of real text cut to each length (in tokens, at a token boundary), a question
 * follows, the model answers greedily through its key/value cache (the prompt prefilled in chunks, so a long prompt
 * needs one chunk's activations), and a cell is right when the first number in the answer is the needle's.
 */
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { native, type NativeModel, type RunOptions } from "../native/addon.ts";
import { readManifest } from "../shards/manifest-file.ts";
import { readNpyInfo, readSequences } from "../shards/npy.ts";
import { MANIFEST } from "../shards/layout.ts";
import type { TextTokenizer } from "../tokenizer/load.ts";
import { UsageError } from "../util/errors.ts";
import { mulberry32 } from "../train/data.ts";
import { argmax } from "./metrics.ts";

export const NEEDLE = (number: string) => `\nThe special magic number is: ${number}.\n`;
export const QUESTION = "\n\nWhat is the special magic number mentioned in the text above?\nThe special magic number is:";
/** Tokens the answer may take: a space, seven digits and a full stop fit with room to spare. */
export const ANSWER_TOKENS = 12;
/** Tokens a prefill chunk runs at once. */
export const PREFILL_CHUNK = 2048;

export interface NeedleCell {
  length: number;
  depth: number;
  /** tokens of the prompt (haystack, needle and question): the cell's length */
  prompt_tokens: number;
  /** where the needle's first token is in the prompt */
  needle_at: number;
  number: string;
  answer: string;
  correct: boolean;
}

/** The cell's 7-digit number: a pure function of the seed, the length and the depth. */
export function needleNumber(seed: number, length: number, depth: number): string {
  const next = mulberry32((seed * 1_000_003 + length * 7919 + Math.round(depth * 1_000_000)) >>> 0);
  next();
  return String(1_000_000 + Math.floor(next() * 9_000_000));
}

/** A cell's prompt: the first `length - needle - question` haystack tokens, the needle at round(depth × that), the question. */
export function needlePrompt(haystack: ArrayLike<number>, needle: number[], question: number[], length: number, depth: number): { ids: number[]; needleAt: number } {
  const room = length - needle.length - question.length;
  if (room < 1) throw new UsageError(`--lengths ${length}: shorter than the needle and question (${needle.length + question.length} tokens)`);
  if (haystack.length < room) throw new UsageError(`the haystack has ${haystack.length} tokens; length ${length} needs ${room}`);
  const at = Math.round(depth * room);
  const ids: number[] = [];
  for (let i = 0; i < at; i++) ids.push(haystack[i]!);
  ids.push(...needle);
  for (let i = at; i < room; i++) ids.push(haystack[i]!);
  ids.push(...question);
  return { ids, needleAt: at };
}

/** Exact match: the answer's first run of digits is the number. */
export function scoreAnswer(answer: string, number: string): boolean {
  return answer.match(/\d+/)?.[0] === number;
}

/**
 * The haystack's tokens: a build's documents in shard order with each EOS (and BOS) replaced by the tokens of a blank
 * line, so the text runs on with nothing that ends the model's attention; or a text file, tokenised whole.
 */
export async function haystackTokens(source: string, tokenizer: TextTokenizer, need: number, ids: { eosId: number; bosId: number }): Promise<number[]> {
  const info = await stat(source).catch(() => undefined);
  if (!info) throw new UsageError(`--haystack ${source}: no such file or build folder`);
  if (!info.isDirectory()) return tokenizer.encode(await readFile(source, "utf8"));
  let manifest;
  try {
    manifest = await readManifest(source);
  } catch {
    throw new UsageError(`--haystack ${source}: a folder without ${MANIFEST}; give a build's output folder or a text file`);
  }
  const blank = tokenizer.encode("\n\n");
  const out: number[] = [];
  for (const shard of manifest.shards) {
    const path = join(source, shard.path);
    const npy = await readNpyInfo(path);
    for (let s = 0; s < shard.sequences && out.length < need; s++) {
      for (const id of await readSequences(path, npy, s, 1)) {
        if (id === ids.eosId) out.push(...blank);
        else if (id !== ids.bosId) out.push(id);
      }
    }
    if (out.length >= need) break;
  }
  return out;
}

/** Runs the prompt through the key/value cache in chunks; the logits after its last token. */
export async function prefill(model: NativeModel, ids: number[], run: RunOptions, chunk = PREFILL_CHUNK): Promise<Float32Array> {
  let logits: Float32Array | undefined;
  for (let i = 0; i < ids.length; i += chunk) {
    const part = Int32Array.from(ids.slice(i, i + chunk));
    logits = await native("prefill", () => model.decodeStep(part, run));
  }
  return logits!;
}

/** One cell: the prompt prefilled, then greedy tokens until a newline, EOS or ANSWER_TOKENS. */
export async function answerCell(
  model: NativeModel,
  tokenizer: Pick<TextTokenizer, "decode">,
  prompt: number[],
  o: { run: RunOptions; eosId: number; vocab: number; chunk?: number },
): Promise<string> {
  model.decodeReset(prompt.length + ANSWER_TOKENS);
  let logits = await prefill(model, prompt, o.run, o.chunk);
  const answer: number[] = [];
  for (let i = 0; i < ANSWER_TOKENS; i++) {
    const next = argmax(logits.subarray(0, o.vocab));
    if (next === o.eosId) break;
    answer.push(next);
    const text = tokenizer.decode(answer);
    if (/\S/.test(text) && text.trimStart().includes("\n")) break;
    if (i + 1 < ANSWER_TOKENS) logits = await native("generation", () => model.decodeStep(Int32Array.of(next), o.run));
  }
  return tokenizer.decode(answer).trim().split("\n")[0]!;
}
