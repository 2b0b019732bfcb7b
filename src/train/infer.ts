import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { loadAddon, native, type ModelConfig, type NativeModel } from "../native/addon.ts";
import { manifestHash, readManifest } from "../shards/manifest-file.ts";
import { tokenizerForManifest } from "../shards/tokenizer-for.ts";
import { loadTokenizer } from "../tokenizer/load.ts";
import { RuntimeFailure, UsageError } from "../util/errors.ts";
import { loadWeights, resolveCheckpoint, verifyCheckpoint } from "./checkpoint.ts";
import { maskedLossSum, targetMask, TokenData } from "./data.ts";
import { resolveModelConfig } from "./model-config.ts";
import { evaluate, runOptionsOf, type TrainConfig } from "./trainer.ts";

export interface LoadedCheckpoint {
  dir: string;
  model: NativeModel;
  config: ModelConfig;
  run: Pick<TrainConfig, "precision" | "doc_mask" | "reset_positions" | "mask_eos_loss" | "data" | "micro_batch"> &
    Partial<Pick<TrainConfig, "seed" | "context" | "eval_sequences">>;
  /** False for a bare Hugging Face checkpoint, which has no run_config.json beside it. */
  hasRunConfig: boolean;
  /** The manifest hash of the data the run trained on, when the checkpoint records it. */
  dataManifestSha256?: string;
  eosId: number;
  bosId: number;
}

/** Loads a checkpoint (or a run's latest) with the options it was trained with. */
export async function openCheckpoint(path: string, device: "cpu" | "cuda", threads: number): Promise<LoadedCheckpoint> {
  const dir = await resolveCheckpoint(path);
  await verifyCheckpoint(dir, ["config.json", "model.safetensors", "tokenizer.json"]);
  const hf = JSON.parse(await readFile(join(dir, "config.json"), "utf8").catch(() => {
    throw new UsageError(`${dir}: no config.json`);
  }));
  const { config } = await resolveModelConfig(join(dir, "config.json"));
  // The run's own options live beside its checkpoints; a bare HF checkpoint gets the training defaults.
  let run: LoadedCheckpoint["run"] = { precision: "bf16", doc_mask: true, reset_positions: true, mask_eos_loss: true, data: "", micro_batch: 4 };
  let hasRunConfig = false;
  try {
    run = JSON.parse(await readFile(join(dir, "..", "run_config.json"), "utf8"));
    hasRunConfig = true;
  } catch {
    /* defaults */
  }
  const state = await readFile(join(dir, "trainer_state.json"), "utf8").then((t) => JSON.parse(t) as { data_manifest_sha256?: string }, () => undefined);
  const model = new (loadAddon().Model)(config, device, threads);
  await loadWeights(model, dir, false);
  return { dir, model, config, run, hasRunConfig, dataManifestSha256: state?.data_manifest_sha256, eosId: hf.eos_token_id ?? 100001, bosId: hf.bos_token_id ?? 100000 };
}

/**
 * Mean loss over the run's own held-out windows (the same seeded split training evaluated on), so the
 * number is comparable with the run's eval_loss and never includes data the model trained on.
 */
export async function evalHeldOut(ckpt: LoadedCheckpoint, dataDir: string, onProgress?: (done: number, total: number) => void) {
  const run = ckpt.run;
  if (!ckpt.hasRunConfig || run.seed === undefined || !run.context || !run.eval_sequences) {
    throw new UsageError(`${ckpt.dir}: no run_config.json with held-out windows beside it (a bare checkpoint, or a run with --eval-sequences 0); pass --all or --sequences A..B`);
  }
  const manifest = await readManifest(dataDir);
  if (ckpt.dataManifestSha256 && manifestHash(manifest) !== ckpt.dataManifestSha256) {
    throw new UsageError(`${dataDir} is not the data ${ckpt.dir} was trained on, so the run's held-out windows mean nothing there; pass --all or --sequences A..B to score it`);
  }
  const data = await TokenData.open(dataDir, { seed: run.seed, evalWindows: run.eval_sequences, context: run.context, modelContext: ckpt.config.maxSeq, modelVocab: ckpt.config.vocab });
  try {
    const { mean, tokens } = await evaluate(ckpt.model, data, run.micro_batch, runOptionsOf(run, ckpt.eosId), ckpt.config.vocab, data.evalWindows, onProgress);
    return { mean, perplexity: Math.exp(mean), tokens, windows: data.evalWindows.length, context: data.context };
  } finally {
    await data.close();
  }
}

/** Per-sequence mean losses over global sequences [first, last] of a build, with the training masks. */
export async function evalSequences(ckpt: LoadedCheckpoint, dataDir: string, first: number, last: number | undefined, onProgress?: (done: number, total: number) => void) {
  const data = await TokenData.open(dataDir, { seed: 0, evalWindows: 0, modelContext: ckpt.config.maxSeq, modelVocab: ckpt.config.vocab, context: undefined });
  try {
    const total = data.manifest.total_sequences;
    const end = Math.min(last ?? total - 1, total - 1);
    if (first < 0 || first > end) throw new UsageError(`--sequences ${first}..${last ?? ""}: the build has sequences 0..${total - 1}`);
    const opts = runOptionsOf(ckpt.run, ckpt.eosId);
    const perWindow = data.windowsPerSequence;
    const out: { sequence: number; loss: number; tokens: number }[] = [];
    for (let s = first; s <= end; s++) {
      const windows = Array.from({ length: perWindow }, (_, w) => s * perWindow + w);
      const tokens = await data.read(windows, ckpt.config.vocab);
      const losses = await native("evaluation", () => ckpt.model.forwardLosses(tokens, windows.length, data.context, opts));
      const { sum, count } = maskedLossSum(losses, targetMask(tokens, windows.length, data.context, opts));
      out.push({ sequence: s, loss: sum / Math.max(1, count), tokens: count });
      onProgress?.(s - first + 1, end - first + 1);
    }
    const tokens = out.reduce((a, o) => a + o.tokens, 0);
    const mean = out.reduce((a, o) => a + o.loss * o.tokens, 0) / Math.max(1, tokens);
    return { mean, perplexity: Math.exp(mean), tokens, sequences: out };
  } finally {
    await data.close();
  }
}

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

export async function generate(
  ckpt: LoadedCheckpoint,
  prompt: string,
  o: { maxTokens: number; temperature: number; topP: number; seed: number },
  onToken?: (text: string) => void,
): Promise<{ text: string; ids: number[] }> {
  // The checkpoint's own copy, else the tokenizer the training data's manifest records.
  const tokenizerPath = join(ckpt.dir, "tokenizer.json");
  const tokenizer = await loadTokenizer(tokenizerPath).catch(async () => {
    try {
      return await tokenizerForManifest(await readManifest(ckpt.run.data));
    } catch (error) {
      throw new RuntimeFailure(
        `${tokenizerPath} is missing and the data's tokenizer could not be loaded (${(error as Error).message}); copy the build's tokenizer.json there`,
      );
    }
  });
  const ids = tokenizer.encode(prompt);
  if (ids.length === 0) throw new UsageError("--prompt is empty");
  const opts = runOptionsOf(ckpt.run, ckpt.eosId);
  const rand = rng(o.seed);
  onToken?.(prompt);
  const generated: number[] = [];
  let shown = "";
  for (let i = 0; i < o.maxTokens && ids.length < ckpt.config.maxSeq; i++) {
    const logits = await native("generation", () => ckpt.model.lastLogits(Int32Array.from(ids), 1, ids.length, opts));
    const next = sampleToken(logits.subarray(0, tokenizer.vocabSize), o.temperature, o.topP, rand);
    if (next === ckpt.eosId) break;
    ids.push(next);
    generated.push(next);
    const text = tokenizer.decode(generated);
    if (onToken && !text.endsWith("\ufffd")) {
      onToken(text.slice(shown.length));
      shown = text;
    }
  }
  return { text: tokenizer.decode(generated), ids: generated };
}
