/** A trained checkpoint opened for use: its weights in a native model, and the options it was trained with. */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { loadAddon, nativeModelConfig, type ModelConfig, type NativeModel } from "../native/addon.ts";
import { UsageError } from "../util/errors.ts";
import { loadWeights, resolveCheckpoint, statePath, verifyCheckpoint } from "../train/checkpoint.ts";
import { resolveModelConfig } from "../train/model-config.ts";
import type { TrainConfig } from "../train/trainer.ts";

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
  const state = await readFile(statePath(dir), "utf8").then((t) => JSON.parse(t) as { data_manifest_sha256?: string }, () => undefined);
  const model = new (loadAddon().Model)(nativeModelConfig(config), device, threads);
  await loadWeights(model, dir, false);
  return { dir, model, config, run, hasRunConfig, dataManifestSha256: state?.data_manifest_sha256, eosId: hf.eos_token_id ?? 100001, bosId: hf.bos_token_id ?? 100000 };
}

