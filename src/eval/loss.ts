/** Loss of a checkpoint on a build: the run's own held-out windows, or chosen sequences. */
import { native } from "../native/addon.ts";
import { manifestHash, readManifest } from "../shards/manifest-file.ts";
import { UsageError } from "../util/errors.ts";
import { maskedLossSum, targetMask, TokenData } from "../train/data.ts";
import { evaluate } from "../train/passes.ts";
import { runOptionsOf } from "../train/trainer.ts";
import type { LoadedCheckpoint } from "./checkpoint.ts";

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

