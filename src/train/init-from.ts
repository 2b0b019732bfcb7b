/**
 * `--init-from`: the weights a run starts from instead of random ones — a checkpoint folder, a run folder (its last
 * checkpoint) or a Hugging Face Llama repo (`org/name[@revision]`, safetensors and config.json, sharded included),
 * fetched through the project's Hub client into the shared cache. Everything here is checked before the first step:
 * the shapes against the model, the vocabulary against the data's tokenizer, every value finite.
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { HubClient } from "../hub/client.ts";
import { hubEnv } from "../hub/env.ts";
import { SHAPE_KEYS, TensorKind, type ModelConfig, type NativeModel } from "../native/addon.ts";
import { RuntimeFailure, UsageError } from "../util/errors.ts";
import { canonicalJson, sha256File, sha256Hex } from "../util/hash.ts";
import { readTrainerState, resolveCheckpoint, statePath, verifyCheckpoint } from "./checkpoint.ts";
import { fromHfConfig } from "./model-config.ts";
import { readSafetensors, type NamedTensor } from "./safetensors.ts";

/** Where the weights came from, as run_config.json, each checkpoint's state and the model card record it. */
export interface InitProvenance {
  /** the checkpoint's absolute path, or `org/name@commit` */
  source: string;
  /** sha256 of every file read, by name */
  files: Record<string, string>;
}

export interface InitSource {
  provenance: InitProvenance;
  /** the model the source holds, from its config.json */
  modelConfig: ModelConfig;
  /** local paths of the safetensors files holding the weights */
  weightFiles: string[];
  /** the AdamW moments, when the source has them (a chuxin-data checkpoint) */
  optimizerFile?: string;
  /** the AdamW steps behind those moments (their bias corrections go on from there) */
  optimizerSteps: number;
  /** local path of the source's tokenizer.json, when it has one */
  tokenizerFile?: string;
}

const HUB_REPO = /^([A-Za-z0-9][\w.-]*\/[\w.-]+)(?:@([\w./-]+))?$/;
const INDEX = "model.safetensors.index.json";

/** Resolves `spec` to local files (downloading a Hub repo's), hashing each; nothing is loaded yet. */
export async function resolveInitSource(spec: string): Promise<InitSource> {
  if (existsSync(spec)) return localSource(spec);
  const hub = spec.match(HUB_REPO);
  if (!hub) throw new UsageError(`--init-from ${spec}: neither an existing checkpoint or run folder nor a Hub model repo (org/name or org/name@revision)`);
  return hubSource(hub[1]!, hub[2] ?? "main");
}

async function localSource(path: string): Promise<InitSource> {
  // A folder of sharded safetensors (as save_pretrained writes a large model) is a checkpoint too.
  const dir = existsSync(join(path, INDEX)) ? path : await resolveCheckpoint(path);
  const configFile = join(dir, "config.json");
  const index = join(dir, INDEX);
  const weights = existsSync(index) ? await shardsOf(index, (name) => join(dir, name)) : [join(dir, "model.safetensors")];
  const optimizerFile = existsSync(join(dir, "optimizer.safetensors")) ? join(dir, "optimizer.safetensors") : undefined;
  await verifyCheckpoint(dir, ["model.safetensors", "optimizer.safetensors", "config.json"]);
  const state = existsSync(statePath(dir)) ? await readTrainerState(dir) : undefined;
  const tokenizerFile = existsSync(join(dir, "tokenizer.json")) ? join(dir, "tokenizer.json") : undefined;
  const read = [configFile, ...(existsSync(index) ? [index] : []), ...weights, ...(optimizerFile ? [optimizerFile] : []), ...(tokenizerFile ? [tokenizerFile] : [])];
  const files: Record<string, string> = {};
  for (const file of read) files[file.slice(dir.length + 1)] = await sha256File(file);
  return {
    provenance: { source: dir, files },
    modelConfig: await configOf(configFile),
    weightFiles: weights,
    ...(optimizerFile ? { optimizerFile } : {}),
    optimizerSteps: state?.step ?? 0,
    ...(tokenizerFile ? { tokenizerFile } : {}),
  };
}

async function hubSource(id: string, revision: string): Promise<InitSource> {
  const client = new HubClient(hubEnv());
  const repo = { type: "model" as const, id };
  const commit = await client.resolveRevision(repo, revision);
  const listed = new Map((await client.listFiles(repo, commit)).map((f) => [f.path, f]));
  const files: Record<string, string> = {};
  const fetch = async (name: string) => {
    const entry = listed.get(name);
    if (!entry) throw new RuntimeFailure(`--init-from ${id}@${revision}: the repo has no ${name} at ${commit.slice(0, 12)}`);
    const got = await client.download(repo, commit, entry);
    files[name] = got.sha256;
    return got.localPath;
  };
  const configFile = await fetch("config.json");
  let weightFiles: string[];
  if (listed.has(INDEX)) {
    const index = await fetch(INDEX);
    weightFiles = [];
    for (const name of await shardNames(index)) weightFiles.push(await fetch(name));
  } else if (listed.has("model.safetensors")) {
    weightFiles = [await fetch("model.safetensors")];
  } else {
    throw new RuntimeFailure(`--init-from ${id}@${revision}: no model.safetensors or ${INDEX} at ${commit.slice(0, 12)}; only safetensors weights are read (convert .bin files with transformers' save_pretrained)`);
  }
  const tokenizerFile = listed.has("tokenizer.json") ? await fetch("tokenizer.json") : undefined;
  return {
    provenance: { source: `${id}@${commit}`, files },
    modelConfig: await configOf(configFile, `${id}@${revision}: config.json`),
    weightFiles,
    optimizerSteps: 0,
    ...(tokenizerFile ? { tokenizerFile } : {}),
  };
}

async function configOf(path: string, label = path): Promise<ModelConfig> {
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(await readFile(path, "utf8"));
  } catch (error) {
    throw new RuntimeFailure(`${label}: unreadable (${(error as Error).message})`);
  }
  return fromHfConfig(raw, label);
}

/** The shard files a safetensors index names, each once, in order of first use; names are checked as relative paths. */
async function shardNames(indexPath: string): Promise<string[]> {
  let map: unknown;
  try {
    map = JSON.parse(await readFile(indexPath, "utf8")).weight_map;
  } catch (error) {
    throw new RuntimeFailure(`${indexPath}: unreadable (${(error as Error).message})`);
  }
  if (!map || typeof map !== "object") throw new RuntimeFailure(`${indexPath}: no weight_map`);
  const names = [...new Set(Object.values(map as Record<string, unknown>))];
  for (const name of names) {
    if (typeof name !== "string" || !/^[\w.-]+\.safetensors$/.test(name)) throw new RuntimeFailure(`${indexPath}: weight_map names ${JSON.stringify(name)}, not a safetensors file beside the index`);
  }
  return names as string[];
}

async function shardsOf(indexPath: string, at: (name: string) => string): Promise<string[]> {
  return (await shardNames(indexPath)).map(at);
}

/** Refuses a source whose shapes are not the model's, naming both. */
export function checkShapes(source: InitSource, model: ModelConfig, modelLabel: string): void {
  const differ = SHAPE_KEYS.filter((k) => source.modelConfig[k] !== model[k]);
  if (differ.length > 0) {
    throw new UsageError(
      `--init-from ${source.provenance.source}: its shapes are not the model's (${differ.map((k) => `${k} ${source.modelConfig[k]} there, ${model[k]} in ${modelLabel}`).join("; ")}); ` +
        `leave --model out to take the source's, or start from a source of this shape`,
    );
  }
}

/** What decides which id means which token: the vocabulary and the added tokens (not the post-processor, which checkpoints rewrite). */
export async function vocabularyDigest(tokenizerJson: string): Promise<string> {
  const json = JSON.parse(await readFile(tokenizerJson, "utf8")) as { model?: { vocab?: unknown }; added_tokens?: { id: number; content: string }[] };
  return sha256Hex(canonicalJson({ vocab: json.model?.vocab ?? null, added: (json.added_tokens ?? []).map((t) => [t.id, t.content]) }));
}

/** Refuses a source whose tokenizer maps ids to other tokens than the data's. */
export async function checkVocabulary(source: InitSource, dataTokenizer: string): Promise<void> {
  if (!source.tokenizerFile) return;
  const [theirs, ours] = await Promise.all([vocabularyDigest(source.tokenizerFile), vocabularyDigest(dataTokenizer)]);
  if (theirs !== ours) {
    throw new UsageError(
      `--init-from ${source.provenance.source}: its tokenizer.json has another vocabulary than the data's (${dataTokenizer}), so each id would mean another token; ` +
        `train on data built with the source's tokenizer`,
    );
  }
}

/** Loads the source's weights (and moments, with `withOptimizer`) into the model, refusing missing, misshapen or non-finite tensors. */
export async function loadInitWeights(model: NativeModel, source: InitSource, withOptimizer: boolean): Promise<void> {
  const weights = new Map<string, NamedTensor & { file: string }>();
  for (const file of source.weightFiles) for (const [name, t] of await readSafetensors(file)) weights.set(name, { ...t, file });
  const optimizer = withOptimizer && source.optimizerFile ? await readSafetensors(source.optimizerFile) : undefined;
  const used = new Set<string>();
  model.tensors().forEach((t, i) => {
    const put = (tensor: (NamedTensor & { file?: string }) | undefined, name: string, kind: number, file: string) => {
      if (!tensor) throw new UsageError(`--init-from ${source.provenance.source}: ${file} lacks tensor ${name}; the source is not a Llama of this shape`);
      const want = t.rows === 1 ? [t.cols] : [t.rows, t.cols];
      if (tensor.shape.join("×") !== want.join("×")) throw new UsageError(`--init-from ${source.provenance.source}: ${name} is ${tensor.shape.join("×")} in ${file}, the model's is ${want.join("×")}`);
      const bad = tensor.data.findIndex((v) => !Number.isFinite(v));
      if (bad >= 0) throw new UsageError(`--init-from ${source.provenance.source}: ${name}[${bad}] is ${tensor.data[bad]} in ${file}; the source holds non-finite values, start from an earlier checkpoint`);
      model.setTensor(kind, i, tensor.data);
    };
    const w = weights.get(t.name);
    used.add(t.name);
    put(w, t.name, TensorKind.param, w?.file ?? "the weights");
    if (optimizer) {
      put(optimizer.get(`${t.name}.exp_avg`), `${t.name}.exp_avg`, TensorKind.adamM, source.optimizerFile!);
      put(optimizer.get(`${t.name}.exp_avg_sq`), `${t.name}.exp_avg_sq`, TensorKind.adamV, source.optimizerFile!);
    }
  });
  // Older transformers checkpoints carry RoPE's inverse frequencies as buffers: derived, not weights.
  const extra = [...weights.keys()].filter((n) => !used.has(n) && !n.endsWith("rotary_emb.inv_freq"));
  if (extra.length > 0) throw new UsageError(`--init-from ${source.provenance.source}: tensors the model does not have (${extra.slice(0, 3).join(", ")}${extra.length > 3 ? `, … ${extra.length} in all` : ""}); it is not a plain Llama`);
}
