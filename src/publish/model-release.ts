/**
 * A training run as a model repo: on main the final checkpoint as `transformers` loads it (model.safetensors,
 * config.json, generation_config.json, tokenizer.json, tokenizer_config.json), the training log (metrics.jsonl,
 * loss.svg), the run's options and a model card; every intermediate checkpoint on its own branch, named for its
 * step and tokens (step-0010000-tokens-41B), as OLMo and Pythia publish them.
 */
import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { basename, isAbsolute, join, resolve, sep } from "node:path";
import { mixtureTable } from "../pipeline/output/manifest.ts";
import { readManifest } from "../shards/manifest-file.ts";
import type { Manifest } from "../shards/manifest.ts";
import { tokenizerPathForManifest } from "../shards/tokenizer-for.ts";
import { listCheckpoints, readTrainerState, STATE_FILE, statePath, verifyCheckpoint, type TrainerState } from "../train/checkpoint.ts";
import { parameterCount } from "../train/model-config.ts";
import { trainConfigSchema, type TrainConfig } from "../train/options.ts";
import type { ResultsFile } from "../eval/results.ts";
import { UsageError } from "../util/errors.ts";
import { bytesEntry, checkpointBranch, fileEntry, tokensLabel, type ReleaseBranch, type ReleaseFile } from "./release.ts";

export interface ModelReleaseOptions {
  runDir: string;
  /** the dataset repo the run's data was published to (named in the card and config) */
  dataRepo?: string;
  branch: string;
  license?: string;
}

const MODEL_FILES = ["model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"];

interface Checkpoint {
  dir: string;
  state: TrainerState;
}

/** A checkpoint's loadable files, each checked against the sha256 its state file recorded. */
async function checkpointFiles(c: Checkpoint, manifest: Manifest | undefined, dataDir: string): Promise<ReleaseFile[]> {
  await verifyCheckpoint(c.dir, MODEL_FILES.slice(0, 3));
  const files: ReleaseFile[] = [];
  for (const name of MODEL_FILES) {
    let source = join(c.dir, name);
    if (!existsSync(source) && name === "tokenizer.json" && manifest) source = await tokenizerPathForManifest(manifest, dataDir).catch(() => source);
    if (!existsSync(source)) {
      if (name === "tokenizer_config.json") continue; // written by newer versions; transformers falls back without it
      throw new UsageError(`${join(c.dir, name)} is missing, so transformers could not load this checkpoint; it is written at training time (the tokenizer comes from the build's manifest: make it reachable, e.g. HF_HOME as at build time)`);
    }
    files.push(await fileEntry(name, source));
  }
  files.push(await fileEntry(STATE_FILE, statePath(c.dir)));
  return files;
}

/** run_config.json without this machine's paths: the data as the repo it was published to, or its folder name. */
export function publicRunConfig(config: TrainConfig, dataRepo: string | undefined): string {
  const initSource = config.init_source ? { ...config.init_source, source: publicPath(config.init_source.source) } : null;
  return (
    JSON.stringify(
      { ...config, data: dataRepo ?? basename(config.data), out: basename(config.out), model: publicPath(config.model), init_from: config.init_from && publicPath(config.init_from), init_source: initSource },
      null,
      2,
    ) + "\n"
  );
}

/** A local path as its last two parts (run/checkpoint-0000100), so no folder of this machine is published; a repo id or preset as it is. */
export function publicPath(path: string): string {
  return isAbsolute(path) ? path.split(sep).filter(Boolean).slice(-2).join("/") : path;
}

/** The card's benchmark table from results.json (`eval --tasks` on the final checkpoint), with how it was measured. */
function evaluationSection(results: { file?: ResultsFile; curves: string[] }): string {
  const during = results.curves.length ? `\nDuring training (\`--eval-tasks\`):\n\n${results.curves.map((c) => `![${c}](${c})`).join("\n")}\n` : "";
  if (!results.file) return `No benchmark results were recorded for this checkpoint (\`chuxin-data eval --checkpoint RUN --tasks …\` writes them).\n${during}`;
  const tasks = Object.values(results.file.tasks);
  const metrics = [...new Set(tasks.flatMap((t) => Object.keys(t.metrics)))];
  const cell = (m?: { value: number; stderr: number }) => (m ? `${(100 * m.value).toFixed(2)} ± ${Number.isFinite(m.stderr) ? (100 * m.stderr).toFixed(2) : "n/a"}` : "");
  const lines = tasks.map(
    (t) =>
      `| ${t.task}${t.limit !== null ? ` (first ${t.limit} rows)` : ""} | ${t.num_fewshot} | ${(Object.values(t.metrics)[0]?.n ?? 0).toLocaleString("en-US")} | ${metrics.map((m) => cell(t.metrics[m])).join(" | ")} | ${t.dataset.repo}@${t.dataset.commit.slice(0, 12)}${t.missing_subsets.length ? ` (${t.missing_subsets.length} subsets absent)` : ""} |`,
  );
  return `Measured with \`chuxin-data eval --tasks\` (${results.file.precision}): lm-evaluation-harness's prompts and scoring, each task file naming the
harness file it follows; values in %, ± the standard error. \`results.json\` holds every number, \`eval/*.samples.jsonl\` each
row's log-likelihoods or completion (the numbers recompute from them), \`eval.lock.json\` the dataset files read.

| task | shots | rows | ${metrics.join(" | ")} | dataset |
|---|---:|---:|${metrics.map(() => "---:").join("|")}|---|
${lines.join("\n")}
${during}`;
}

function modelCard(
  o: ModelReleaseOptions,
  config: TrainConfig,
  final: Checkpoint,
  branches: { name: string; state: TrainerState }[],
  manifest: Manifest | undefined,
  results: { file?: ResultsFile; curves: string[] },
): string {
  const mc = config.model_config;
  const yaml = [
    "---",
    ...(o.license ? [`license: ${o.license}`] : []),
    "library_name: transformers",
    "pipeline_tag: text-generation",
    ...(o.dataRepo ? ["datasets:", `- ${o.dataRepo}`] : []),
    "tags:",
    "- llama",
    "- chuxin-data",
    "---",
  ];
  const rows = (pairs: [string, unknown][]) => pairs.map(([k, v]) => `| ${k} | ${v} |`).join("\n");
  const hyper = (["steps", "global_batch_tokens", "micro_batch", "context", "lr", "min_lr", "warmup_steps", "schedule", "decay_steps", "weight_decay", "decay_embeddings", "beta1", "beta2", "adam_eps", "clip", "precision", "doc_mask", "reset_positions", "mask_eos_loss", "seed"] as const).map(
    (k) => [k, JSON.stringify(config[k])] as [string, unknown],
  );
  return `${yaml.join("\n")}
# ${basename(o.runDir)}

A LLaMA-2-style causal language model trained with chuxin-data: RMSNorm pre-norm blocks, RoPE, SwiGLU, no biases,
untied embeddings, attention within documents.

| architecture | |
|---|---|
${rows([
  ["parameters", parameterCount(mc).toLocaleString("en-US")],
  ["layers", mc.nLayers],
  ["hidden size", mc.hidden],
  ["attention heads", mc.nHeads],
  ["FFN size", mc.ffn],
  ["vocabulary", mc.vocab],
  ["context", mc.maxSeq],
  ["RoPE θ", mc.ropeTheta],
  ...(mc.ropeScaling ? [["RoPE scaling", `${mc.ropeScaling.type} × ${mc.ropeScaling.factor} of ${mc.ropeScaling.originalMaxPositions} positions`] as [string, unknown]] : []),
])}

${config.init_source ? `Started from ${publicPath(config.init_source.source)} (sha256 of its weights: ${Object.entries(config.init_source.files).filter(([n]) => n.endsWith(".safetensors")).map(([n, h]) => `${n} ${h.slice(0, 16)}…`).join(", ")}), not from random weights.\n\n` : ""}Trained for ${final.state.step.toLocaleString("en-US")} steps on ${final.state.tokens_seen.toLocaleString("en-US")} tokens (${tokensLabel(final.state.tokens_seen)}); final training loss ${final.state.last_loss.toFixed(4)}.

## Data

${o.dataRepo ? `[${o.dataRepo}](../../datasets/${o.dataRepo}): its manifest, recipe and lock rebuild the exact shards.` : "The build this run read (not published with --data-repo)."}${manifest ? `\n\n${mixtureTable(manifest)}` : ""}

## Training

![loss](loss.svg)

\`metrics.jsonl\` holds every step's loss, learning rate, gradient norm and tokens; \`run_config.json\` every option.

| hyperparameter | value |
|---|---|
${rows(hyper)}

## Evaluation

${evaluationSection(results)}

## Intermediate checkpoints

Each is a branch of this repo (\`revision=...\` in \`from_pretrained\`):

| branch | step | tokens |
|---|---:|---:|
${branches.map((b) => `| \`${b.name}\` | ${b.state.step.toLocaleString("en-US")} | ${b.state.tokens_seen.toLocaleString("en-US")} |`).join("\n") || "| (none kept) | | |"}

The optimizer state is not published.
`;
}

export async function modelRelease(o: ModelReleaseOptions): Promise<{ branches: ReleaseBranch[]; warnings: string[] }> {
  const runDir = resolve(o.runDir);
  const raw = await readFile(join(runDir, "run_config.json"), "utf8").catch(() => {
    throw new UsageError(`${runDir}: no run_config.json; pass a run folder written by chuxin-data train`);
  });
  const config = trainConfigSchema.parse(JSON.parse(raw));
  const listed = await listCheckpoints(runDir);
  if (listed.length === 0) throw new UsageError(`${runDir}: no checkpoint to publish`);
  const checkpoints: Checkpoint[] = [];
  for (const c of listed) checkpoints.push({ dir: join(runDir, c.name), state: await readTrainerState(join(runDir, c.name)) });
  const manifest = await readManifest(config.data).catch(() => undefined);
  const final = checkpoints[checkpoints.length - 1]!;
  const named = checkpoints.map((c) => ({ name: checkpointBranch(c.state.step, c.state.tokens_seen), state: c.state, c }));
  const out: ReleaseBranch[] = [];
  for (const b of named) {
    const files = await checkpointFiles(b.c, manifest, config.data);
    const card = `---\nlibrary_name: transformers\ntags:\n- chuxin-data\n---\n# ${basename(runDir)} at step ${b.state.step.toLocaleString("en-US")}\n\nAn intermediate checkpoint: ${b.state.tokens_seen.toLocaleString("en-US")} tokens seen, training loss ${b.state.last_loss.toFixed(4)}. The final model and the full card are on main.\n`;
    out.push({ branch: b.name, files, card: bytesEntry("README.md", card), title: `checkpoint at step ${b.state.step}` });
  }
  const mainFiles = [
    ...(await checkpointFiles(final, manifest, config.data)),
    await fileEntry("metrics.jsonl", join(runDir, "metrics.jsonl")),
    ...(existsSync(join(runDir, "loss.svg")) ? [await fileEntry("loss.svg", join(runDir, "loss.svg"))] : []),
    bytesEntry("run_config.json", publicRunConfig(config, o.dataRepo)),
  ];
  // Benchmarks go on the card only when they were measured on exactly these weights.
  const resultsPath = join(final.dir, "results.json");
  const curves = (await readdir(runDir)).filter((f) => /^benchmark-[\w.-]+\.svg$/.test(f)).sort();
  const results: { file?: ResultsFile; curves: string[] } = { curves };
  if (existsSync(resultsPath)) {
    const file = JSON.parse(await readFile(resultsPath, "utf8")) as ResultsFile;
    const weights = final.state.files?.["model.safetensors"];
    if (weights && file.checkpoint?.model_sha256 !== weights) {
      throw new UsageError(`${resultsPath} was measured on other weights (model sha256 ${file.checkpoint?.model_sha256 ?? "none"}, the checkpoint's is ${weights}); rerun eval --tasks on ${final.dir} or delete it`);
    }
    results.file = file;
    mainFiles.push(await fileEntry("results.json", resultsPath));
    for (const t of Object.values(file.tasks)) mainFiles.push(await fileEntry(t.samples_file, join(final.dir, t.samples_file)));
    if (existsSync(join(final.dir, "eval.lock.json"))) mainFiles.push(await fileEntry("eval.lock.json", join(final.dir, "eval.lock.json")));
  }
  for (const c of curves) mainFiles.push(await fileEntry(c, join(runDir, c)));
  const card = modelCard(o, config, final, named, manifest, results);
  // Branches first, main and its card (which lists them) last.
  out.push({ branch: o.branch, files: mainFiles, card: bytesEntry("README.md", card), title: `${basename(runDir)}: step ${final.state.step}, ${tokensLabel(final.state.tokens_seen)} tokens` });
  const warnings: string[] = [];
  if (final.state.step < config.steps) {
    warnings.push(
      `the run stopped at step ${final.state.step.toLocaleString("en-US")} of the ${config.steps.toLocaleString("en-US")} planned: main gets that checkpoint, not a finished run's. ` +
        `Finish it first (train ... --out ${basename(runDir)} --resume), or publish it knowing so`,
    );
  }
  return { branches: out, warnings };
}
