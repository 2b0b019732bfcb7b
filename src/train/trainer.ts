import { appendFile, mkdir, readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { loadAddon, native, type NativeModel, type RunOptions } from "../native/addon.ts";
import { manifestHash, readManifest } from "../shards/manifest-file.ts";
import { tokenizerPathForManifest } from "../shards/tokenizer-for.ts";
import { writeFileAtomic, writeJsonAtomic } from "../util/atomic.ts";
import { RuntimeFailure, UsageError } from "../util/errors.ts";
import { lockFolder } from "../util/folder-lock.ts";
import { checkShardHashes } from "../shards/verify.ts";
import { RESUMABLE, trainConfigSchema, type TrainConfig } from "./options.ts";
import { checkpointName, listCheckpoints, loadWeights, readTrainerState, removePartialCheckpoints, saveCheckpoint, verifyCheckpoint, type TrainerState } from "./checkpoint.ts";
import { countTargets, maskedLossSum, targetMask, TokenData } from "./data.ts";
import { lossCurveSvg } from "./plot.ts";
import { learningRate } from "./schedule.ts";

export type { TrainConfig } from "./options.ts";

export type TrainEvent =
  | { type: "start"; step: number; steps: number; tokens_per_step: number; parameters: number; backend: string; resumed_from: string | null }
  | { type: "step"; step: number; loss: number; lr: number; grad_norm: number; tokens_per_s: number; eta_s: number }
  /** after the first step, when every buffer has its size: bytes of weights + gradients + AdamW state, and of activations */
  | { type: "memory"; states_bytes: number; activation_bytes: number; micro_batch: number; context: number; recompute: boolean }
  | { type: "eval"; step: number; eval_loss: number; perplexity: number }
  | { type: "checkpoint"; step: number; path: string }
  | { type: "note"; message: string }
  | { type: "done"; step: number; out: string };

export function runOptionsOf(
  c: Pick<TrainConfig, "precision" | "doc_mask" | "reset_positions" | "mask_eos_loss"> & { recompute?: boolean },
  eosId: number,
): RunOptions {
  return {
    precision: c.precision === "fp32" ? 1 : 0,
    docMask: c.doc_mask ? 1 : 0,
    resetPositions: c.reset_positions ? 1 : 0,
    maskEosLoss: c.mask_eos_loss ? 1 : 0,
    eosId,
    recompute: c.recompute ? 1 : 0,
  };
}

/** Where a run caches the sha256 of each shard it checked, by size and mtime. */
const SHARD_HASH_CACHE = ".shard-hashes.json";


async function resolveRunConfig(requested: TrainConfig, resume: boolean): Promise<{ config: TrainConfig; from: string | null; changes: string[] }> {
  const runDir = requested.out;
  const checkpoints = await listCheckpoints(runDir);
  if (!resume) {
    if (checkpoints.length > 0) throw new UsageError(`${runDir} already holds checkpoints; pass --resume to continue it, or choose another --out`);
    return { config: requested, from: null, changes: [] };
  }
  if (checkpoints.length === 0) throw new UsageError(`--resume: ${runDir} has no checkpoint to resume from`);
  const savedPath = join(runDir, "run_config.json");
  let savedRaw: Record<string, unknown>;
  try {
    savedRaw = JSON.parse(await readFile(savedPath, "utf8"));
  } catch {
    throw new RuntimeFailure(`${savedPath}: missing or unreadable; cannot resume`);
  }
  // Options added since the run was recorded take their defaults (which keep the old behaviour).
  const parsed = trainConfigSchema.safeParse(savedRaw);
  if (!parsed.success) throw new RuntimeFailure(`${savedPath}: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}; cannot resume`);
  const saved = parsed.data;
  const config = { ...saved };
  const changes: string[] = [];
  // The learning-rate schedule is part of the run: a longer --steps extends training on the recorded
  // schedule (at min_lr once its decay ends) unless --decay-steps asks for a new one.
  const savedDecay = saved.decay_steps ?? saved.steps;
  for (const key of RESUMABLE) {
    let value: unknown = requested[key];
    if (key === "decay_steps" && value === null) value = savedDecay;
    const before = key === "decay_steps" ? savedDecay : saved[key];
    if (value !== before) changes.push(`${key} ${before} → ${value}`);
    Object.assign(config, { [key]: value });
  }
  if (config.steps !== saved.steps && requested.decay_steps === null) {
    changes.push(`the cosine schedule keeps decaying over ${savedDecay} steps (pass --decay-steps to change it)`);
  }
  return { config, from: join(runDir, checkpoints[checkpoints.length - 1]!.name), changes };
}

/**
 * Trains through the native addon: gradient accumulation to a global batch in tokens, AdamW with
 * warmup + cosine, global-norm clipping, periodic eval and atomic checkpoints; every step to metrics.jsonl.
 */
export async function train(
  requested: TrainConfig,
  options: { resume: boolean; onEvent: (e: TrainEvent) => void; shouldStop?: () => boolean },
): Promise<void> {
  const runDir = resolve(requested.out);
  await mkdir(runDir, { recursive: true });
  const lock = await lockFolder(runDir, "chuxin-data train");
  try {
    await trainLocked(requested, runDir, options);
  } finally {
    await lock.release();
  }
}

/** Metrics lines up to `step`; a torn last line (what a kill mid-append leaves) is dropped, any other bad line refused. */
async function keptMetrics(metricsPath: string, step: number): Promise<{ line: string; value: { step: number; loss?: number; eval_loss?: number } }[]> {
  const lines = (await readFile(metricsPath, "utf8").catch(() => "")).split("\n");
  const kept = [];
  for (const [i, line] of lines.entries()) {
    if (!line) continue;
    let value;
    try {
      value = JSON.parse(line);
    } catch {
      if (lines.slice(i + 1).every((l) => !l)) break;
      throw new RuntimeFailure(`${metricsPath}:${i + 1}: not a JSON line; fix or remove that line, then resume`);
    }
    if (value.step <= step) kept.push({ line, value });
  }
  return kept;
}

async function trainLocked(
  requested: TrainConfig,
  runDir: string,
  options: { resume: boolean; onEvent: (e: TrainEvent) => void; shouldStop?: () => boolean },
): Promise<void> {
  for (const name of await removePartialCheckpoints(runDir)) {
    options.onEvent({ type: "note", message: `removed ${name}, a checkpoint a killed run left half-written` });
  }
  const { config, from, changes } = await resolveRunConfig({ ...requested, out: runDir }, options.resume);
  if (changes.length > 0) options.onEvent({ type: "note", message: `resuming with changes: ${changes.join("; ")}` });
  const manifest = await readManifest(config.data);
  const manifestSha = manifestHash(manifest);
  const damaged = await checkShardHashes(config.data, manifest, join(runDir, SHARD_HASH_CACHE));
  if (damaged.length > 0) {
    throw new RuntimeFailure(
      `${config.data} does not match its manifest, so training would read other tokens than the build wrote: ${damaged.slice(0, 3).join("; ")}` +
        `${damaged.length > 3 ? `; and ${damaged.length - 3} more` : ""}. Rebuild it (chuxin-data build), or restore the files`,
    );
  }
  const mc = config.model_config;
  const data = await TokenData.open(config.data, {
    context: config.context ?? undefined,
    seed: config.seed,
    evalWindows: config.eval_sequences,
    modelContext: mc.maxSeq,
    modelVocab: mc.vocab,
  });
  const T = data.context;
  const perMicro = config.micro_batch * T;
  config.context = T;
  if (!config.global_batch_tokens) config.global_batch_tokens = perMicro;
  if (config.global_batch_tokens % perMicro !== 0) {
    throw new UsageError(`--global-batch-tokens ${config.global_batch_tokens} is not a multiple of micro-batch ${config.micro_batch} × context ${T} = ${perMicro}`);
  }
  const accum = config.global_batch_tokens / perMicro;
  const opts = runOptionsOf(config, manifest.tokenizer.eos_id);
  const addon = loadAddon();
  let model: NativeModel;
  try {
    model = new addon.Model(mc, config.device, config.threads);
  } catch (error) {
    throw new RuntimeFailure(`cannot create the model on ${config.device}: ${(error as Error).message}`);
  }
  const metricsPath = join(runDir, "metrics.jsonl");
  const trainPoints: { step: number; loss: number }[] = [];
  const evalPoints: { step: number; loss: number }[] = [];
  let step = 0;
  let samples = 0;
  try {
    if (from) {
      const state = await readTrainerState(from);
      if (state.data_manifest_sha256 !== manifestSha) throw new UsageError(`--resume: ${config.data} is not the data this run was trained on (manifest changed)`);
      if (state.samples_seen !== state.step * accum * config.micro_batch) {
        throw new RuntimeFailure(
          `${join(from, "trainer_state.json")}: samples_seen ${state.samples_seen} is not step ${state.step} × ${accum * config.micro_batch} windows per step; the file was edited or damaged, use an earlier checkpoint`,
        );
      }
      await verifyCheckpoint(from, ["model.safetensors", "optimizer.safetensors", "config.json"]);
      await loadWeights(model, from, true);
      step = state.step;
      samples = state.samples_seen;
      // Metrics after the checkpoint belong to the interrupted attempt; drop them so the file reads as one run.
      const kept = await keptMetrics(metricsPath, step);
      await writeFileAtomic(metricsPath, kept.map((k) => k.line + "\n").join(""));
      for (const { value: m } of kept) {
        if (m.loss !== undefined) trainPoints.push({ step: m.step, loss: m.loss });
        if (m.eval_loss !== undefined) evalPoints.push({ step: m.step, loss: m.eval_loss });
      }
    } else {
      model.init(config.seed);
      await writeFileAtomic(metricsPath, "");
    }
    await writeJsonAtomic(join(runDir, "run_config.json"), config);
    let tokenizerPath: string | undefined;
    try {
      tokenizerPath = await tokenizerPathForManifest(manifest);
    } catch {
      tokenizerPath = undefined; // the checkpoint is still loadable; generate will say where to find the tokenizer
    }
    const parameters = model.tensors().reduce((a, t) => a + t.rows * t.cols, 0);
    options.onEvent({ type: "start", step, steps: config.steps, tokens_per_step: config.global_batch_tokens, parameters, backend: model.backend(), resumed_from: from });
    const started = performance.now();
    const firstStep = step;
    const decaySteps = config.decay_steps ?? config.steps;
    const save = async (lastLoss: number, lr: number) => {
      const state: TrainerState = { step, samples_seen: samples, tokens_seen: samples * T, lr, seed: config.seed, last_loss: lastLoss, data_manifest_sha256: manifestSha };
      const path = await saveCheckpoint(runDir, model, mc, state, { eosId: manifest.tokenizer.eos_id, bosId: manifest.tokenizer.bos_id, addBos: manifest.tokenizer.add_bos }, tokenizerPath, config.keep_last);
      options.onEvent({ type: "checkpoint", step, path });
    };
    let lastLoss = NaN;
    let lr = 0;
    while (step < config.steps && !options.shouldStop?.()) {
      const batches: Int32Array[] = [];
      let targets = 0;
      for (let a = 0; a < accum; a++) {
        const windows = Array.from({ length: config.micro_batch }, (_, b) => data.trainWindow(samples + a * config.micro_batch + b));
        const tokens = await data.read(windows, mc.vocab);
        targets += countTargets(tokens, config.micro_batch, T, opts);
        batches.push(tokens);
      }
      if (targets === 0) throw new RuntimeFailure(`step ${step + 1}: the batch has no positions with a target`);
      model.zeroGrad();
      let lossSum = 0;
      for (const tokens of batches) {
        const r = await native(`step ${step + 1}`, () => model.forwardBackward(tokens, config.micro_batch, T, opts, 1 / targets));
        lossSum += r.lossSum;
      }
      const loss = lossSum / targets;
      const stopped = async (gradNorm: number | string) => {
        const last = await listCheckpoints(runDir);
        const latest = last.length ? join(runDir, last[last.length - 1]!.name) : undefined;
        // A checkpoint this attempt resumed from and never got past is not known to be good.
        const where =
          step === firstStep && from
            ? `This was the first step after resuming from ${from}, so that checkpoint is suspect: resume from an earlier one${last.length > 1 ? ` (${join(runDir, last[last.length - 2]!.name)})` : ""}.`
            : latest
              ? `The last good checkpoint is ${latest}.`
              : "No checkpoint was written yet.";
        return new RuntimeFailure(
          `step ${step + 1}: loss is ${loss}, gradient norm ${gradNorm}; training stopped before applying it. ${where} Lower --lr or use --precision fp32 to investigate.`,
        );
      };
      if (!Number.isFinite(loss)) throw await stopped("not computed");
      const nextLr = learningRate(step + 1, { lr: config.lr, minLr: config.min_lr, warmupSteps: config.warmup_steps, decaySteps });
      // The norm, the clip factor and AdamW run on the backend with one read-back; a non-finite norm moves nothing.
      const gradNorm = await native("AdamW", () =>
        model.clipAdamwStep(
          { lr: nextLr, beta1: config.beta1, beta2: config.beta2, eps: config.adam_eps, weightDecay: config.weight_decay, step: step + 1, decayEmbeddings: config.decay_embeddings ? 1 : 0 },
          config.clip,
        ),
      );
      if (!Number.isFinite(gradNorm)) throw await stopped(gradNorm);
      step++;
      samples += accum * config.micro_batch;
      lr = nextLr;
      lastLoss = loss;
      if (step === firstStep + 1) {
        const memory = model.memory();
        options.onEvent({ type: "memory", states_bytes: memory.states, activation_bytes: memory.activations, micro_batch: config.micro_batch, context: T, recompute: config.recompute });
      }
      const seconds = (performance.now() - started) / 1000;
      const tokensPerS = ((step - firstStep) * config.global_batch_tokens) / seconds;
      const etaS = ((config.steps - step) * config.global_batch_tokens) / tokensPerS;
      trainPoints.push({ step, loss });
      await appendFile(metricsPath, JSON.stringify({ step, loss, lr, grad_norm: gradNorm, tokens: samples * T, tokens_per_s: Math.round(tokensPerS), time: new Date().toISOString() }) + "\n");
      options.onEvent({ type: "step", step, loss, lr, grad_norm: gradNorm, tokens_per_s: tokensPerS, eta_s: etaS });
      if (config.eval_every > 0 && config.eval_sequences > 0 && (step % config.eval_every === 0 || step === config.steps)) {
        const evalLoss = (await evaluate(model, data, config.micro_batch, opts, mc.vocab, data.evalWindows)).mean;
        evalPoints.push({ step, loss: evalLoss });
        await appendFile(metricsPath, JSON.stringify({ step, eval_loss: evalLoss, perplexity: Math.exp(evalLoss), time: new Date().toISOString() }) + "\n");
        options.onEvent({ type: "eval", step, eval_loss: evalLoss, perplexity: Math.exp(evalLoss) });
      }
      if ((config.save_every > 0 && step % config.save_every === 0) || step === config.steps) await save(loss, lr);
    }
    if (step < config.steps && step > firstStep) {
      const last = await listCheckpoints(runDir);
      if (last[last.length - 1]?.name !== checkpointName(step)) await save(lastLoss, lr);
    }
    options.onEvent({ type: "done", step, out: runDir });
  } finally {
    await writeFileAtomic(join(runDir, "loss.svg"), lossCurveSvg(trainPoints, evalPoints, `${config.model} on ${manifest.recipe.name}`)).catch(() => {});
    await data.close();
    model.dispose();
  }
}

/** Mean loss over windows, with the training masks; the one evaluation loop of training and `eval`. */
export async function evaluate(
  model: NativeModel,
  data: TokenData,
  batch: number,
  opts: RunOptions,
  vocab: number,
  windows: ArrayLike<number>,
  onProgress?: (done: number, total: number) => void,
): Promise<{ mean: number; tokens: number }> {
  let sum = 0;
  let count = 0;
  for (let i = 0; i < windows.length; i += batch) {
    const chunk = Array.from({ length: Math.min(batch, windows.length - i) }, (_, j) => windows[i + j]!);
    const tokens = await data.read(chunk, vocab);
    const losses = await native("evaluation", () => model.forwardLosses(tokens, chunk.length, data.context, opts));
    const r = maskedLossSum(losses, targetMask(tokens, chunk.length, data.context, opts));
    sum += r.sum;
    count += r.count;
    onProgress?.(i + chunk.length, windows.length);
  }
  return { mean: sum / Math.max(1, count), tokens: count };
}
