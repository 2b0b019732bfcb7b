import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { TensorKind, type ModelConfig, type NativeModel } from "../native/addon.ts";
import { explainWriteError, tempPathFor } from "../util/atomic.ts";
import { RuntimeFailure, UsageError } from "../util/errors.ts";
import { hfConfig } from "./model-config.ts";
import { sha256File, sha256Hex } from "../util/hash.ts";
import { encodeSafetensors, readSafetensors, type NamedTensor } from "./safetensors.ts";
import { trainedTokenizerConfig, trainedTokenizerJson } from "../tokenizer/hf-files.ts";

export interface TrainerState {
  step: number;
  samples_seen: number;
  tokens_seen: number;
  lr: number;
  seed: number;
  last_loss: number;
  data_manifest_sha256: string;
  /** --init-from: where the run's weights started (the source, and the sha256 of each file read) */
  init_from?: { source: string; files: Record<string, string> };
  /** sha256 of every other file in the checkpoint, checked before it is loaded (resume, eval, generate). */
  files?: Record<string, string>;
}

const CHECKPOINT = /^checkpoint-(\d+)$/;
/** A checkpoint folder being written: checkpoint-NNNNNNN.<random>.tmp (see tempPathFor). */
const CHECKPOINT_TEMP = /^checkpoint-\d+\.[0-9a-f]{8}\.tmp$/;

export function checkpointName(step: number): string {
  return `checkpoint-${String(step).padStart(7, "0")}`;
}

function tensorsOf(model: NativeModel, kind: number, suffix = ""): NamedTensor[] {
  return model.tensors().map((t, i) => ({
    name: t.name + suffix,
    shape: t.rows === 1 ? [t.cols] : [t.rows, t.cols],
    data: model.getTensor(kind, i),
  }));
}

/**
 * The run's state in a checkpoint (step, samples and tokens seen, learning rate, loss, data, each file's sha256).
 * Named as our own: Hugging Face's Trainer writes trainer_state.json with other fields (global_step, log_history),
 * which tools reading that name would expect. Checkpoints written before the rename have trainer_state.json.
 */
export const STATE_FILE = "chuxin_state.json";
const LEGACY_STATE_FILE = "trainer_state.json";

/** A checkpoint's state file: chuxin_state.json, or trainer_state.json in one written before the rename. */
export function statePath(dir: string): string {
  const current = join(dir, STATE_FILE);
  return !existsSync(current) && existsSync(join(dir, LEGACY_STATE_FILE)) ? join(dir, LEGACY_STATE_FILE) : current;
}

/**
 * Writes RUN/checkpoint-NNNNNNN/ with model.safetensors (Hugging Face Llama names, F32 master weights),
 * config.json (LlamaForCausalLM), optimizer.safetensors (AdamW moments), chuxin_state.json and the
 * tokenizer. Built in a temp folder and renamed, so a checkpoint is either whole or absent. In a data-parallel
 * run every rank calls it (sharded AdamW moments are gathered from every rank) and only the one with `write`
 * writes.
 */
export async function saveCheckpoint(
  runDir: string,
  model: NativeModel,
  config: ModelConfig,
  state: TrainerState,
  ids: { eosId: number; bosId: number; addBos: boolean },
  tokenizerPath: string | undefined,
  keepLast: number,
  write = true,
): Promise<string> {
  const final = join(runDir, checkpointName(state.step));
  const weights = encodeSafetensors(tensorsOf(model, TensorKind.param));
  const optimizer = encodeSafetensors([...tensorsOf(model, TensorKind.adamM, ".exp_avg"), ...tensorsOf(model, TensorKind.adamV, ".exp_avg_sq")]);
  if (!write) return final;
  const tmp = tempPathFor(final);
  await mkdir(tmp, { recursive: true });
  try {
    const files: Record<string, string | Uint8Array> = {
      "model.safetensors": weights,
      "optimizer.safetensors": optimizer,
      "config.json": JSON.stringify(hfConfig(config, ids.eosId, ids.bosId), null, 2) + "\n",
      // No pad token in the vocabulary: padding with EOS is what generate() assumes then, said once here.
      "generation_config.json": JSON.stringify({ bos_token_id: ids.bosId, eos_token_id: ids.eosId, pad_token_id: ids.eosId }, null, 2) + "\n",
    };
    if (tokenizerPath) {
      const tokenizer = await readFile(tokenizerPath);
      files["tokenizer.json"] = trainedTokenizerJson(tokenizer, ids);
      files["tokenizer_config.json"] = JSON.stringify(trainedTokenizerConfig(tokenizer, ids, config.maxSeq), null, 2) + "\n";
    }
    const hashes: Record<string, string> = {};
    for (const [name, data] of Object.entries(files)) {
      await writeFile(join(tmp, name), data);
      hashes[name] = sha256Hex(data);
    }
    await writeFile(join(tmp, STATE_FILE), JSON.stringify({ ...state, files: hashes }, null, 2) + "\n");
    await rm(final, { recursive: true, force: true });
    await rename(tmp, final);
  } catch (error) {
    await rm(tmp, { recursive: true, force: true });
    throw explainWriteError(error, tmp, 4 * 3 * model.tensors().reduce((a, t) => a + t.rows * t.cols, 0));
  }
  const all = await listCheckpoints(runDir);
  for (const old of all.slice(0, Math.max(0, all.length - keepLast))) await rm(join(runDir, old.name), { recursive: true, force: true });
  return final;
}

export async function listCheckpoints(runDir: string): Promise<{ name: string; step: number }[]> {
  let names: string[];
  try {
    names = await readdir(runDir);
  } catch {
    return [];
  }
  return names
    .map((name) => ({ name, m: name.match(CHECKPOINT) }))
    .filter((x) => x.m)
    .map((x) => ({ name: x.name, step: Number(x.m![1]) }))
    .sort((a, b) => a.step - b.step);
}

/** A checkpoint folder, or a run folder (its latest checkpoint). */
export async function resolveCheckpoint(path: string): Promise<string> {
  const all = await listCheckpoints(path);
  if (all.length > 0) return join(path, all[all.length - 1]!.name);
  try {
    await readFile(join(path, "model.safetensors"));
    return path;
  } catch {
    throw new UsageError(`${path}: no checkpoint here (expected model.safetensors or checkpoint-* folders)`);
  }
}

/** Removes checkpoint folders a killed save left half-written; the caller holds the run folder's lock. */
export async function removePartialCheckpoints(runDir: string): Promise<string[]> {
  const names = (await readdir(runDir).catch(() => [] as string[])).filter((n) => CHECKPOINT_TEMP.test(n));
  for (const name of names) await rm(join(runDir, name), { recursive: true, force: true });
  return names;
}

/**
 * Checks a checkpoint's files against the sha256s its chuxin_state.json recorded when it was saved, so a
 * damaged file is refused by name rather than loaded. A bare Hugging Face checkpoint (no trainer state, or
 * one without hashes) has nothing to check against.
 */
export async function verifyCheckpoint(dir: string, names: string[]): Promise<void> {
  let recorded: Record<string, string> | undefined;
  try {
    recorded = (JSON.parse(await readFile(statePath(dir), "utf8")) as TrainerState).files;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
    throw new RuntimeFailure(`${statePath(dir)}: unreadable (${(error as Error).message}); the checkpoint is damaged, use an earlier one`);
  }
  if (!recorded) return;
  for (const name of names) {
    const want = recorded[name];
    if (!want) continue;
    const path = join(dir, name);
    const got = await sha256File(path).catch(() => "missing");
    if (got !== want) {
      throw new RuntimeFailure(
        `${path}: ${got === "missing" ? "missing" : `sha256 ${got} differs from ${want}, recorded when the checkpoint was saved`}; ` +
          `the checkpoint is damaged: use an earlier one (or delete this folder to resume from the one before)`,
      );
    }
  }
}

/** Loads weights (and AdamW moments) into the model; call verifyCheckpoint first. */
export async function loadWeights(model: NativeModel, dir: string, withOptimizer: boolean): Promise<void> {
  const weights = await readSafetensors(join(dir, "model.safetensors"));
  const optimizer = withOptimizer ? await readSafetensors(join(dir, "optimizer.safetensors")) : undefined;
  model.tensors().forEach((t, i) => {
    const put = (map: Map<string, NamedTensor>, name: string, kind: number, file: string) => {
      const tensor = map.get(name);
      if (!tensor) throw new RuntimeFailure(`${join(dir, file)}: missing tensor ${name}; the checkpoint does not match the model`);
      if (tensor.data.length !== t.rows * t.cols) throw new RuntimeFailure(`${join(dir, file)}: ${name} has ${tensor.data.length} values, the model needs ${t.rows * t.cols}`);
      const bad = tensor.data.findIndex((v) => !Number.isFinite(v));
      if (bad >= 0) throw new RuntimeFailure(`${join(dir, file)}: ${name}[${bad}] is ${tensor.data[bad]}; the checkpoint holds non-finite values, use an earlier one`);
      model.setTensor(kind, i, tensor.data);
    };
    put(weights, t.name, TensorKind.param, "model.safetensors");
    if (optimizer) {
      put(optimizer, `${t.name}.exp_avg`, TensorKind.adamM, "optimizer.safetensors");
      put(optimizer, `${t.name}.exp_avg_sq`, TensorKind.adamV, "optimizer.safetensors");
    }
  });
}

/** The trainer state of checkpoint `dir`, checked against the step its folder is named for. */
export async function readTrainerState(dir: string): Promise<TrainerState> {
  const path = statePath(dir);
  let state: TrainerState;
  try {
    state = JSON.parse(await readFile(path, "utf8"));
  } catch (error) {
    throw new RuntimeFailure(`${path}: missing or unreadable (${(error as Error).message}); the checkpoint is damaged, use an earlier one`);
  }
  const named = basename(dir).match(CHECKPOINT);
  if (!Number.isSafeInteger(state.step) || !Number.isSafeInteger(state.samples_seen) || (named && Number(named[1]) !== state.step)) {
    throw new RuntimeFailure(`${path}: step ${state.step} does not match the folder's step ${named?.[1] ?? "?"} (or samples_seen ${state.samples_seen} is not a count); the file was edited or damaged`);
  }
  return state;
}
