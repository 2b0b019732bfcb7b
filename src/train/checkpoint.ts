import { copyFile, mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { TensorKind, type ModelConfig, type NativeModel } from "../native/addon.ts";
import { tempPathFor } from "../util/atomic.ts";
import { RuntimeFailure, UsageError } from "../util/errors.ts";
import { hfConfig } from "./model-config.ts";
import { encodeSafetensors, readSafetensors, type NamedTensor } from "./safetensors.ts";

export interface TrainerState {
  step: number;
  samples_seen: number;
  tokens_seen: number;
  lr: number;
  seed: number;
  last_loss: number;
  data_manifest_sha256: string;
}

const CHECKPOINT = /^checkpoint-(\d+)$/;

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
 * Writes RUN/checkpoint-NNNNNNN/ with model.safetensors (Hugging Face Llama names, F32 master weights),
 * config.json (LlamaForCausalLM), optimizer.safetensors (AdamW moments), trainer_state.json and the
 * tokenizer. Built in a temp folder and renamed, so a checkpoint is either whole or absent.
 */
export async function saveCheckpoint(
  runDir: string,
  model: NativeModel,
  config: ModelConfig,
  state: TrainerState,
  ids: { eosId: number; bosId: number },
  tokenizerPath: string | undefined,
  keepLast: number,
): Promise<string> {
  const final = join(runDir, checkpointName(state.step));
  const tmp = tempPathFor(final);
  await mkdir(tmp, { recursive: true });
  try {
    await writeFile(join(tmp, "model.safetensors"), encodeSafetensors(tensorsOf(model, TensorKind.param)));
    await writeFile(
      join(tmp, "optimizer.safetensors"),
      encodeSafetensors([...tensorsOf(model, TensorKind.adamM, ".exp_avg"), ...tensorsOf(model, TensorKind.adamV, ".exp_avg_sq")]),
    );
    await writeFile(join(tmp, "config.json"), JSON.stringify(hfConfig(config, ids.eosId, ids.bosId), null, 2) + "\n");
    await writeFile(join(tmp, "generation_config.json"), JSON.stringify({ bos_token_id: ids.bosId, eos_token_id: ids.eosId }, null, 2) + "\n");
    await writeFile(join(tmp, "trainer_state.json"), JSON.stringify(state, null, 2) + "\n");
    if (tokenizerPath) await copyFile(tokenizerPath, join(tmp, "tokenizer.json"));
    await rm(final, { recursive: true, force: true });
    await rename(tmp, final);
  } catch (error) {
    await rm(tmp, { recursive: true, force: true });
    throw error;
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

export async function loadWeights(model: NativeModel, dir: string, withOptimizer: boolean): Promise<void> {
  const weights = await readSafetensors(join(dir, "model.safetensors"));
  const optimizer = withOptimizer ? await readSafetensors(join(dir, "optimizer.safetensors")) : undefined;
  model.tensors().forEach((t, i) => {
    const put = (map: Map<string, NamedTensor>, name: string, kind: number, file: string) => {
      const tensor = map.get(name);
      if (!tensor) throw new RuntimeFailure(`${join(dir, file)}: missing tensor ${name}; the checkpoint does not match the model`);
      if (tensor.data.length !== t.rows * t.cols) throw new RuntimeFailure(`${join(dir, file)}: ${name} has ${tensor.data.length} values, the model needs ${t.rows * t.cols}`);
      model.setTensor(kind, i, tensor.data);
    };
    put(weights, t.name, TensorKind.param, "model.safetensors");
    if (optimizer) {
      put(optimizer, `${t.name}.exp_avg`, TensorKind.adamM, "optimizer.safetensors");
      put(optimizer, `${t.name}.exp_avg_sq`, TensorKind.adamV, "optimizer.safetensors");
    }
  });
}

export async function readTrainerState(dir: string): Promise<TrainerState> {
  try {
    return JSON.parse(await readFile(join(dir, "trainer_state.json"), "utf8"));
  } catch {
    throw new RuntimeFailure(`${dir}: trainer_state.json is missing or unreadable`);
  }
}
