/** Text generation from a checkpoint: the prompt tokenized, tokens sampled one at a time (greedy or nucleus). */
import { join } from "node:path";
import { native } from "../native/addon.ts";
import { readManifest } from "../shards/manifest-file.ts";
import { tokenizerForManifest } from "../shards/tokenizer-for.ts";
import { loadTokenizer, type TextTokenizer } from "../tokenizer/load.ts";
import { RuntimeFailure, UsageError } from "../util/errors.ts";
import { runOptionsOf } from "../train/trainer.ts";
import type { LoadedCheckpoint } from "./checkpoint.ts";

/** splitmix-style PRNG for sampling, seeded by --seed. */
function rng(seed: number): () => number {
  let s = BigInt(seed) & 0xffffffffffffffffn;
  return () => {
    s = (s + 0x9e3779b97f4a7c15n) & 0xffffffffffffffffn;
    let z = s;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & 0xffffffffffffffffn;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & 0xffffffffffffffffn;
    return Number((z ^ (z >> 31n)) >> 11n) / 2 ** 53;
  };
}

export function sampleToken(logits: Float32Array, temperature: number, topP: number, rand: () => number): number {
  if (temperature <= 0) {
    let best = 0;
    for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
    return best;
  }
  let mx = -Infinity;
  for (const l of logits) mx = Math.max(mx, l);
  const probs = Array.from(logits, (l, i) => ({ i, p: Math.exp((l - mx) / temperature) }));
  const z = probs.reduce((a, x) => a + x.p, 0);
  probs.sort((a, b) => b.p - a.p || a.i - b.i);
  let kept = 0;
  let mass = 0;
  while (kept < probs.length && mass < topP * z) mass += probs[kept++]!.p;
  let r = rand() * mass;
  for (let k = 0; k < kept; k++) if ((r -= probs[k]!.p) <= 0) return probs[k]!.i;
  return probs[kept - 1]!.i;
}

/** The checkpoint's own tokenizer.json, else the tokenizer the training data's manifest records. */
export async function checkpointTokenizer(ckpt: LoadedCheckpoint): Promise<TextTokenizer> {
  const tokenizerPath = join(ckpt.dir, "tokenizer.json");
  return loadTokenizer(tokenizerPath).catch(async () => {
    try {
      return await tokenizerForManifest(await readManifest(ckpt.run.data), ckpt.run.data);
    } catch (error) {
      throw new RuntimeFailure(
        `${tokenizerPath} is missing and the data's tokenizer could not be loaded (${(error as Error).message}); copy the build's tokenizer.json there`,
      );
    }
  });
}

export async function generate(
  ckpt: LoadedCheckpoint,
  prompt: string,
  o: { maxTokens: number; temperature: number; topP: number; seed: number },
  onToken?: (text: string) => void,
): Promise<{ text: string; ids: number[] }> {
  const tokenizer = await checkpointTokenizer(ckpt);
  const ids = tokenizer.encode(prompt);
  if (ids.length === 0) throw new UsageError("--prompt is empty");
  const opts = runOptionsOf(ckpt.run, ckpt.eosId);
  const rand = rng(o.seed);
  onToken?.(prompt);
  const generated: number[] = [];
  let shown = "";
  // The key/value cache (cx_decode_*): the prompt runs once, then each new token alone.
  const room = Math.min(ckpt.config.maxSeq, ids.length + o.maxTokens);
  if (ids.length >= ckpt.config.maxSeq) throw new UsageError(`--prompt is ${ids.length} tokens, the model's context is ${ckpt.config.maxSeq}`);
  ckpt.model.decodeReset(room);
  let step = Int32Array.from(ids);
  for (let i = 0; i < o.maxTokens && ids.length < room; i++) {
    const input = step;
    const logits = await native("generation", () => ckpt.model.decodeStep(input, opts));
    const next = sampleToken(logits.subarray(0, tokenizer.vocabSize), o.temperature, o.topP, rand);
    if (next === ckpt.eosId) break;
    ids.push(next);
    generated.push(next);
    step = Int32Array.of(next);
    const text = tokenizer.decode(generated);
    if (onToken && !text.endsWith("\ufffd")) {
      onToken(text.slice(shown.length));
      shown = text;
    }
  }
  return { text: tokenizer.decode(generated), ids: generated };
}
