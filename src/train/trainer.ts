import { existsSync } from "node:fs";
import { appendFile, rm, rmdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { loadAddon, native, nativeModelConfig, type NativeModel, type NativeModelConfig, type RunOptions } from "../native/addon.ts";
import { manifestHash, readManifest } from "../shards/manifest-file.ts";
import { makeFolder, writeFileAtomic, writeJsonAtomic } from "../util/atomic.ts";
import { RuntimeFailure, UsageError } from "../util/errors.ts";
import { lockFolder } from "../util/folder-lock.ts";
import type { TrainConfig } from "./options.ts";
import { RankGroup, SINGLE, type World } from "./distributed.ts";
import { keptMetrics } from "./run-folder.ts";
import { checkpointName, listCheckpoints, loadWeights, readTrainerState, saveCheckpoint, statePath, verifyCheckpoint, type TrainerState } from "./checkpoint.ts";
import { TokenData } from "./data.ts";
import { accumulateGradients, evaluate, type PreparedStep } from "./passes.ts";
import { lossCurveSvg, writeBenchmarkCurves, type BenchmarkPoint } from "./plot.ts";
import { learningRate, type Schedule } from "./schedule.ts";
import { loadInitWeights } from "./init-from.ts";
import { prepareRun, SHARD_HASH_CACHE, type RunPlan } from "./prepare-run.ts";
import { contextFit, type ContextFit } from "./memory-fit.ts";

export type { TrainConfig } from "./options.ts";

export type TrainEvent =
  | { type: "start"; step: number; steps: number; tokens_per_step: number; parameters: number; backend: string; resumed_from: string | null }
  | { type: "step"; step: number; loss: number; lr: number; grad_norm: number; tokens_per_s: number; eta_s: number }
  /** after the first step, when every buffer has its size: bytes of weights + gradients + AdamW state, and of activations */
  | ({ type: "memory"; states_bytes: number; activation_bytes: number; micro_batch: number; context: number; recompute: boolean; ranks: number; zero: number; context_parallel: number; peak_rss_bytes: number } & ContextFit)
  | { type: "eval"; step: number; eval_loss: number; perplexity: number }
  /** --eval-tasks: each task's metrics on the current weights */
  | { type: "benchmarks"; step: number; tokens: number; tasks: Record<string, Record<string, number>> }
  | { type: "checkpoint"; step: number; path: string; replicas?: { ranks: number; digest: string } }
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

/** A step whose loss or gradient norm is not finite: refused on every rank alike, so it says where to resume itself. */
class DivergedStep extends RuntimeFailure {}



/**
 * Trains through the native addon: gradient accumulation to a global batch in tokens, AdamW with
 * warmup + cosine, global-norm clipping, periodic eval and atomic checkpoints; every step to metrics.jsonl.
 */
export interface TrainOptions {
  resume: boolean;
  onEvent: (e: TrainEvent) => void;
  shouldStop?: () => boolean;
  /** this process's place in a data-parallel run (distributed.ts); one rank by default */
  world?: World;
  /**
   * --eval-tasks: scores the benchmarks on the model's current weights (the CLI supplies it from eval/, which train
   * does not import). Rank 0 alone runs it; the other ranks wait for it at their next collective.
   */
  benchmarks?: (model: NativeModel, run: RunOptions, eosId: number) => Promise<Record<string, Record<string, number>>>;
  /** Makes the model (default: the addon's): the seam a test wraps to see each call the loop makes. */
  createModel?: (config: NativeModelConfig, backend: string, threads: number) => NativeModel;
  /** --model was given (not its default): with --init-from the source's shapes must then be its; otherwise they are the source's */
  modelGiven?: boolean;
}

/**
 * With several ranks, every rank runs this with the same options: rank 0 alone locks the run folder, resolves
 * the run's options (and broadcasts them), checks the shards, writes metrics, checkpoints and the plot, and
 * reports events; each rank computes its share of every step's micro-batches.
 */
export async function train(requested: TrainConfig, options: TrainOptions): Promise<void> {
  const runDir = resolve(requested.out);
  const group = await RankGroup.join(options.world ?? SINGLE, requested.dist_timeout, requested.collectives, requested.device);
  let lock: Awaited<ReturnType<typeof lockFolder>> | undefined;
  const fresh = !existsSync(runDir);
  try {
    const onEvent = group.isRoot ? options.onEvent : () => {};
    const plan = await group.fromRoot(async () => {
      await makeFolder(runDir, "--out");
      lock = await lockFolder(runDir, "chuxin-data train");
      return prepareRun(requested, runDir, { resume: options.resume, modelGiven: options.modelGiven ?? false }, (message) => onEvent({ type: "note", message }));
    });
    // Rank 0's resolved options, but each rank's own CPU threads (ranks may run on unlike machines).
    plan.config.threads = requested.threads;
    await trainPlanned(plan, runDir, { ...options, onEvent }, group);
  } catch (error) {
    // A run refused before it wrote anything leaves no folder behind that it made.
    await lock?.release();
    lock = undefined;
    if (fresh && group.isRoot) {
      await rm(join(runDir, SHARD_HASH_CACHE), { force: true }).catch(() => {});
      await rmdir(runDir).catch(() => {});
    }
    throw error;
  } finally {
    await lock?.release();
    group.dispose();
  }
}

/** The run's learning-rate schedule, as its options record it. */
export function scheduleOf(config: TrainConfig, decaySteps: number): Schedule {
  return { lr: config.lr, minLr: config.min_lr, warmupSteps: config.warmup_steps, decaySteps, kind: config.schedule, decayFraction: config.decay_fraction, decayShape: config.decay_shape };
}

async function trainPlanned(plan: RunPlan, runDir: string, options: TrainOptions, group: RankGroup): Promise<void> {
  const { config, from, tokenizerPath, init } = plan;
  const root = group.isRoot;
  const manifest = await readManifest(config.data);
  const manifestSha = manifestHash(manifest);
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
  if (config.tokens !== null) {
    config.steps = Math.max(1, Math.round(config.tokens / config.global_batch_tokens));
    const trained = config.steps * config.global_batch_tokens;
    options.onEvent({
      type: "note",
      message: `--tokens ${config.tokens.toLocaleString("en-US")}: ${config.steps.toLocaleString("en-US")} steps of ${config.global_batch_tokens.toLocaleString("en-US")} tokens = ${trained.toLocaleString("en-US")} tokens${trained === config.tokens ? "" : " (rounded to whole steps)"}`,
    });
  }
  const accum = config.global_batch_tokens / perMicro;
  const cp = config.context_parallel;
  group.setContextParallel(cp);
  if (T % (2 * cp) !== 0) throw new UsageError(`--context-parallel ${cp} cuts each sequence into ${2 * cp} equal chunks, and the context ${T} does not divide by ${2 * cp}; pick --context accordingly`);
  const shares = group.dataRanks;  // the micro-batches are shared by the rings (each rank, without context parallelism)
  if (accum % shares !== 0) {
    const who = cp > 1 ? `${shares} rings of ${cp} ranks` : `${shares} ranks`;
    throw new UsageError(
      `--global-batch-tokens ${config.global_batch_tokens} is ${accum} micro-batches of ${config.micro_batch} × ${T} tokens, which ${who} cannot share equally; make it a multiple of ${shares * perMicro}`,
    );
  }
  const opts = runOptionsOf(config, manifest.tokenizer.eos_id);
  const addon = loadAddon();
  let model: NativeModel;
  try {
    const create = options.createModel ?? ((c: NativeModelConfig, backend: string, threads: number) => new addon.Model(c, backend, threads));
    model = create(nativeModelConfig(mc), group.modelDevice(config.device), config.threads);
    if (group.comm) model.dataParallel(group.comm, config.zero as 0 | 1);
    if (cp > 1) model.contextParallel(group.comm!);
  } catch (error) {
    throw new RuntimeFailure(`cannot create the model on ${config.device}: ${(error as Error).message}`);
  }
  const metricsPath = join(runDir, "metrics.jsonl");
  const trainPoints: { step: number; loss: number; lr: number }[] = [];
  const evalPoints: { step: number; loss: number }[] = [];
  const benchmarkPoints: BenchmarkPoint[] = [];
  let step = 0;
  let samples = 0;
  try {
    if (from) {
      const state = await readTrainerState(from);
      if (state.data_manifest_sha256 !== manifestSha) throw new UsageError(`--resume: ${config.data} is not the data this run was trained on (manifest changed)`);
      if (state.samples_seen !== state.step * accum * config.micro_batch) {
        throw new RuntimeFailure(
          `${statePath(from)}: samples_seen ${state.samples_seen} is not step ${state.step} × ${accum * config.micro_batch} windows per step; the file was edited or damaged, use an earlier checkpoint`,
        );
      }
      await verifyCheckpoint(from, ["model.safetensors", "optimizer.safetensors", "config.json"]);
      await loadWeights(model, from, true);
      step = state.step;
      samples = state.samples_seen;
      // Metrics after the checkpoint belong to the interrupted attempt; drop them so the file reads as one run.
      const kept = await keptMetrics(metricsPath, step);
      if (root) await writeFileAtomic(metricsPath, kept.map((k) => k.line + "\n").join(""));
      for (const { value: m } of kept) {
        if (m.loss !== undefined) trainPoints.push({ step: m.step, loss: m.loss, lr: m.lr ?? NaN });
        if (m.eval_loss !== undefined) evalPoints.push({ step: m.step, loss: m.eval_loss });
        if (m.benchmarks !== undefined) benchmarkPoints.push({ step: m.step, tokens: m.tokens ?? 0, tasks: m.benchmarks });
      }
    } else {
      if (init) await loadInitWeights(model, init, config.init_optimizer);
      else model.init(config.seed);
      if (root) await writeFileAtomic(metricsPath, "");
    }
    if (root) await writeJsonAtomic(join(runDir, "run_config.json"), config);
    const parameters = model.tensors().reduce((a, t) => a + t.rows * t.cols, 0);
    options.onEvent({ type: "start", step, steps: config.steps, tokens_per_step: config.global_batch_tokens, parameters, backend: model.backend(), resumed_from: from });
    const started = performance.now();
    const firstStep = step;
    const decaySteps = config.decay_steps ?? config.steps;
    const save = async (lastLoss: number, lr: number) => {
      // Every rank takes part: the ranks' weights are compared, and sharded moments are gathered tensor by tensor.
      let replicas: { ranks: number; digest: string } | undefined;
      if (group.parallel) {
        const r = await native("comparing the ranks' weights", () => model.replicasIdentical());
        if (!r.identical) throw new RuntimeFailure(`step ${step}: the ranks' weights differ (rank ${group.rank}'s digest ${r.digest}); the collective library or a rank's memory is faulty`);
        replicas = { ranks: group.size, digest: r.digest };
      }
      const state: TrainerState = {
        step,
        samples_seen: samples,
        tokens_seen: samples * T,
        lr,
        seed: config.seed,
        last_loss: lastLoss,
        data_manifest_sha256: manifestSha,
        ...(config.init_source ? { init_from: config.init_source } : {}),
      };
      const ids = { eosId: manifest.tokenizer.eos_id, bosId: manifest.tokenizer.bos_id, addBos: manifest.tokenizer.add_bos };
      const path = await saveCheckpoint(runDir, model, mc, state, ids, tokenizerPath, config.keep_last, root);
      options.onEvent({ type: "checkpoint", step, path, ...(replicas ? { replicas } : {}) });
    };
    let lastLoss = NaN;
    let lr = 0;
    // With several ranks a stop (Ctrl-C, SIGTERM) is agreed on in the step's sums, so every rank stops after the same step.
    let stopAgreed = false;
    // Where to go back to when a step fails. A checkpoint this attempt resumed from and never got past is not known to be good.
    const lastGood = async () => {
      const last = await listCheckpoints(runDir);
      const latest = last.length ? join(runDir, last[last.length - 1]!.name) : undefined;
      if (step === firstStep && from) {
        return `This was the first step after resuming from ${from}, so that checkpoint is suspect: resume from an earlier one${last.length > 1 ? ` (${join(runDir, last[last.length - 2]!.name)})` : ""}.`;
      }
      return latest ? `The last good checkpoint is ${latest}.` : "No checkpoint was written yet.";
    };
    const stepOnRanks = async () => {
      try {
        return await stepOnce();
      } catch (error) {
        // A rank that died or hung fails every other rank's next collective: say where the run can resume from.
        if (group.size === 1 || !(error instanceof RuntimeFailure) || error instanceof DivergedStep) throw error;
        throw new RuntimeFailure(`${error.message}. ${await lastGood()} Resume with --resume once every rank can run`, { cause: error });
      }
    };
    // With several ranks, each step reads the next one's batches and sums their target counts with its losses.
    let prepared: PreparedStep | undefined;
    const stepOnce = async () => {
      const { loss, stop, next } = await accumulateGradients(model, data, {
        first: samples,
        microBatches: accum,
        microBatch: config.micro_batch,
        opts,
        vocab: mc.vocab,
        label: `step ${step + 1}`,
        group,
        overlap: config.overlap,
        stopRequested: options.shouldStop?.() ?? false,
        prepared,
        ...(step + 1 < config.steps ? { nextFirst: samples + accum * config.micro_batch } : {}),
      });
      prepared = next;
      const stopped = async (gradNorm: number | string) =>
        new DivergedStep(
          `step ${step + 1}: loss is ${loss}, gradient norm ${gradNorm}; training stopped before applying it. ${await lastGood()} Lower --lr or use --precision fp32 to investigate.`,
        );
      if (!Number.isFinite(loss)) throw await stopped("not computed");
      const nextLr = learningRate(step + 1, scheduleOf(config, decaySteps));
      // The norm, the clip factor and AdamW run on the backend with one read-back; a non-finite norm moves nothing.
      const gradNorm = await native("AdamW", () =>
        model.clipAdamwStep(
          { lr: nextLr, beta1: config.beta1, beta2: config.beta2, eps: config.adam_eps, weightDecay: config.weight_decay, step: config.adam_step_offset + step + 1, decayEmbeddings: config.decay_embeddings ? 1 : 0 },
          config.clip,
        ),
      );
      if (!Number.isFinite(gradNorm)) throw await stopped(gradNorm);
      return { loss, stop, nextLr, gradNorm };
    };
    while (step < config.steps && !(group.parallel ? stopAgreed : options.shouldStop?.())) {
      const { loss, stop, nextLr, gradNorm } = await stepOnRanks();
      stopAgreed = stop;
      step++;
      samples += accum * config.micro_batch;
      lr = nextLr;
      lastLoss = loss;
      if (step === firstStep + 1) {
        const memory = model.memory();
        options.onEvent({
          type: "memory",
          states_bytes: memory.states,
          activation_bytes: memory.activations,
          micro_batch: config.micro_batch,
          context: T,
          recompute: config.recompute,
          ranks: group.size,
          zero: group.parallel ? config.zero : 0,
          ...contextFit(model, { tokens: (config.micro_batch * T) / cp, precision: opts.precision, microBatch: config.micro_batch, ranksOnHost: group.world.localWorld, ringSize: cp }),
          context_parallel: cp,
          peak_rss_bytes: process.resourceUsage().maxRSS * 1024,
        });
      }
      const seconds = (performance.now() - started) / 1000;
      const tokensPerS = ((step - firstStep) * config.global_batch_tokens) / seconds;
      const etaS = ((config.steps - step) * config.global_batch_tokens) / tokensPerS;
      trainPoints.push({ step, loss, lr });
      if (root) await appendFile(metricsPath, JSON.stringify({ step, loss, lr, grad_norm: gradNorm, tokens: samples * T, tokens_per_s: Math.round(tokensPerS), time: new Date().toISOString() }) + "\n");
      options.onEvent({ type: "step", step, loss, lr, grad_norm: gradNorm, tokens_per_s: tokensPerS, eta_s: etaS });
      if (config.eval_every > 0 && config.eval_sequences > 0 && (step % config.eval_every === 0 || step === config.steps)) {
        const evalLoss = (await evaluate(model, data, config.micro_batch, opts, mc.vocab, data.evalWindows, undefined, group)).mean;
        evalPoints.push({ step, loss: evalLoss });
        if (root) await appendFile(metricsPath, JSON.stringify({ step, eval_loss: evalLoss, perplexity: Math.exp(evalLoss), time: new Date().toISOString() }) + "\n");
        options.onEvent({ type: "eval", step, eval_loss: evalLoss, perplexity: Math.exp(evalLoss) });
      }
      if (options.benchmarks && config.eval_tasks && config.eval_tasks_every > 0 && (step % config.eval_tasks_every === 0 || step === config.steps) && root) {
        const tasks = await options.benchmarks(model, opts, manifest.tokenizer.eos_id);
        const tokens = samples * T;
        benchmarkPoints.push({ step, tokens, tasks });
        await appendFile(metricsPath, JSON.stringify({ step, tokens, benchmarks: tasks, time: new Date().toISOString() }) + "\n");
        await writeBenchmarkCurves(runDir, benchmarkPoints, `${config.model} on ${manifest.recipe.name}`);
        options.onEvent({ type: "benchmarks", step, tokens, tasks });
      }
      if ((config.save_every > 0 && step % config.save_every === 0) || step === config.steps) await save(loss, lr);
    }
    if (step < config.steps && step > firstStep) {
      const last = await listCheckpoints(runDir);
      if (last[last.length - 1]?.name !== checkpointName(step)) await save(lastLoss, lr);
    }
    options.onEvent({ type: "done", step, out: runDir });
  } finally {
    // No curve for a run that never stepped (refused before its first step): nothing to draw, nothing to leave.
    if (root && trainPoints.length > 0) await writeFileAtomic(join(runDir, "loss.svg"), lossCurveSvg(trainPoints, evalPoints, `${config.model} on ${manifest.recipe.name}`, trainPoints)).catch(() => {});
    await data.close();
    model.dispose();
  }
}
