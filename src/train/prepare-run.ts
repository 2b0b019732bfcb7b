/**
 * Rank 0's part of a run before its first step: half-written checkpoints removed, the options resolved (a resume's
 * recorded ones), the shards checked against the manifest, the build's tokenizer found, --init-from's source
 * resolved and checked, and the model the run trains (RoPE base and scaling, positions) decided.
 */
import { join } from "node:path";
import { readManifest } from "../shards/manifest-file.ts";
import { checkShardHashes } from "../shards/verify.ts";
import { tokenizerPathForManifest } from "../shards/tokenizer-for.ts";
import { RuntimeFailure, UsageError } from "../util/errors.ts";
import { sha256File } from "../util/hash.ts";
import { removePartialCheckpoints } from "./checkpoint.ts";
import { checkShapes, checkVocabulary, resolveInitSource, type InitSource } from "./init-from.ts";
import { modelForRun } from "./model-config.ts";
import type { TrainConfig } from "./options.ts";
import { resolveRunConfig } from "./run-folder.ts";

/** Where a run caches the sha256 of each shard it checked, by size and mtime. */
export const SHARD_HASH_CACHE = ".shard-hashes.json";

/** What rank 0 resolved before any work, for every rank: the options, the checkpoint resumed, the build's tokenizer.json. */
export type RunPlan = { config: TrainConfig; from: string | null; tokenizerPath: string; init: InitSource | null };

/** Rank 0's part before training: half-written checkpoints removed, the run's options resolved, the shards checked. */
export async function prepareRun(requested: TrainConfig, runDir: string, options: { resume: boolean; modelGiven: boolean }, note: (message: string) => void): Promise<RunPlan> {
  for (const name of await removePartialCheckpoints(runDir)) {
    note(`removed ${name}, a checkpoint a killed run left half-written`);
  }
  const { config, from, changes } = await resolveRunConfig({ ...requested, out: runDir }, options.resume);
  if (changes.length > 0) note(`resuming with changes: ${changes.join("; ")}`);
  const manifest = await readManifest(config.data);
  const damaged = await checkShardHashes(config.data, manifest, join(runDir, SHARD_HASH_CACHE));
  if (damaged.length > 0) {
    throw new RuntimeFailure(
      `${config.data} does not match its manifest, so training would read other tokens than the build wrote: ${damaged.slice(0, 3).join("; ")}` +
        `${damaged.length > 3 ? `; and ${damaged.length - 3} more` : ""}. Rebuild it (chuxin-data build), or restore the files`,
    );
  }
  const tokenizerPath = await buildTokenizer(manifest, config.data);
  let init: InitSource | null = null;
  if (!from) {
    init = config.init_from ? await initSource(config, tokenizerPath, options.modelGiven) : null;
    const run = modelForRun(config.model_config, {
      ropeTheta: config.rope_theta,
      ropeScaling: config.rope_scaling,
      ropeFactor: config.rope_factor,
      context: config.context,
      sequenceLength: manifest.sequence_length,
      forcePositions: config.force_positions,
    });
    if (run.problem) throw new UsageError(run.problem);
    if (run.note) note(run.note);
    config.model_config = run.model;
  }
  // A resumed run loads its own checkpoint; where it started is in its recorded options already.
  return { config, from, tokenizerPath, init };
}

/** --init-from: the source resolved (a Hub repo downloaded), its shapes and vocabulary checked, its provenance recorded. */
async function initSource(config: TrainConfig, tokenizerPath: string, modelGiven: boolean): Promise<InitSource> {
  const source = await resolveInitSource(config.init_from!);
  if (modelGiven) checkShapes(source, config.model_config, `--model ${config.model}`);
  else {
    config.model_config = { ...source.modelConfig };
    config.model = source.provenance.source;
  }
  await checkVocabulary(source, tokenizerPath);
  if (config.init_optimizer && !source.optimizerFile) {
    throw new UsageError(`--init-optimizer: ${source.provenance.source} has no optimizer.safetensors (only chuxin-data checkpoints carry AdamW moments); leave --init-optimizer out to start the moments at zero`);
  }
  // What was read: the moments only with --init-optimizer.
  const files = Object.fromEntries(Object.entries(source.provenance.files).filter(([name]) => config.init_optimizer || name !== "optimizer.safetensors"));
  config.init_source = { source: source.provenance.source, files };
  config.adam_step_offset = config.init_optimizer ? source.optimizerSteps : 0;
  return source;
}

/**
 * The tokenizer.json every checkpoint carries, checked before the first step: the build's own copy (or, for a build
 * written before builds kept one, the HF cache's), with the sha256 the manifest records. Without it checkpoints
 * would load in no tokenizer-aware tool.
 */
async function buildTokenizer(manifest: Awaited<ReturnType<typeof readManifest>>, data: string): Promise<string> {
  let path: string;
  try {
    path = await tokenizerPathForManifest(manifest, data);
  } catch (error) {
    throw new RuntimeFailure(
      `the build's tokenizer cannot be found (${(error as Error).message}); checkpoints must carry it. ` +
        (manifest.tokenizer.in_build ? "Copy the whole build folder, or rebuild it" : "Rebuild the data with this version (builds keep their tokenizer.json), or make the HF cache it was built with reachable (HF_HOME)"),
    );
  }
  const sha = await sha256File(path);
  if (sha !== manifest.tokenizer.sha256) {
    throw new RuntimeFailure(`${path}: sha256 ${sha} is not the build's tokenizer (${manifest.tokenizer.sha256}); restore it from the build, or rebuild`);
  }
  return path;
}
