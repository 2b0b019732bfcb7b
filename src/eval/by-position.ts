/**
 * Loss by position (`eval --by-position`): each predicted token's loss bucketed by where its input stands in its
 * document as the model sees it — counted from the document's start, or from the window's when the document began
 * before the window (attention and positions reset there too). A flat curve past the short-context positions says
 * the tail of a long context is used; a rising one that it is not.
 */
import { native } from "../native/addon.ts";
import { UsageError } from "../util/errors.ts";
import { targetMask, TokenData } from "../train/data.ts";
import { runOptionsOf } from "../train/trainer.ts";
import type { LoadedCheckpoint } from "./checkpoint.ts";

export interface PositionBucket {
  /** first and last position of the bucket (inclusive) */
  from: number;
  to: number;
  /** predicted tokens in it */
  tokens: number;
  loss: number;
  perplexity: number;
}

/** Running sums per bucket index. */
export type BucketSums = Map<number, { sum: number; count: number }>;

/**
 * Adds one batch [B][T] to the sums: the loss at t (predicting token t + 1) goes to the bucket of t's position. With
 * the document mask a position after an EOS input starts a new document at 0; without it positions run over the
 * window.
 */
export function addToBuckets(
  sums: BucketSums,
  o: { tokens: Int32Array; losses: Float32Array; mask: Uint8Array; B: number; T: number; eosId: number; documentMask: boolean; bucket: number },
): void {
  for (let b = 0; b < o.B; b++) {
    let start = 0;
    for (let t = 0; t < o.T; t++) {
      const i = b * o.T + t;
      if (o.mask[i]) {
        const k = Math.floor((t - start) / o.bucket);
        const s = sums.get(k) ?? { sum: 0, count: 0 };
        s.sum += o.losses[i]!;
        s.count++;
        sums.set(k, s);
      }
      if (o.documentMask && o.tokens[i] === o.eosId) start = t + 1;
    }
  }
}

export function bucketsOf(sums: BucketSums, bucket: number): PositionBucket[] {
  return [...sums.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([k, s]) => ({ from: k * bucket, to: (k + 1) * bucket - 1, tokens: s.count, loss: s.sum / s.count, perplexity: Math.exp(s.sum / s.count) }));
}

/**
 * The checkpoint's loss by position over the run's held-out windows, or over whole sequences [first, last] of a
 * build (`range`), in batches of the run's micro-batch.
 */
export async function evalByPosition(
  ckpt: LoadedCheckpoint,
  dataDir: string,
  o: { bucket: number; range?: [number, number | undefined] },
  onProgress?: (done: number, total: number) => void,
): Promise<{ buckets: PositionBucket[]; tokens: number; windows: number; context: number }> {
  const run = ckpt.run;
  if (!o.range && (!ckpt.hasRunConfig || run.seed === undefined || !run.context || !run.eval_sequences)) {
    throw new UsageError(`${ckpt.dir}: no run_config.json with held-out windows beside it; pass --all or --sequences A..B`);
  }
  const data = o.range
    ? await TokenData.open(dataDir, { seed: 0, evalWindows: 0, modelContext: ckpt.config.maxSeq, modelVocab: ckpt.config.vocab, context: undefined })
    : await TokenData.open(dataDir, { seed: run.seed!, evalWindows: run.eval_sequences!, context: run.context!, modelContext: ckpt.config.maxSeq, modelVocab: ckpt.config.vocab });
  try {
    let windows: number[];
    if (o.range) {
      const total = data.manifest.total_sequences;
      const [first, lastAsked] = o.range;
      const last = Math.min(lastAsked ?? total - 1, total - 1);
      if (first < 0 || first > last) throw new UsageError(`--sequences ${first}..${lastAsked ?? ""}: the build has sequences 0..${total - 1}`);
      windows = [];
      for (let w = first * data.windowsPerSequence; w < (last + 1) * data.windowsPerSequence; w++) windows.push(w);
    } else windows = [...data.evalWindows];
    if (o.bucket > data.context) throw new UsageError(`--bucket ${o.bucket}: longer than the windows scored (${data.context} tokens); use at most ${data.context}`);
    const opts = runOptionsOf(run, ckpt.eosId);
    const batch = Math.max(1, run.micro_batch ?? 1);
    const sums: BucketSums = new Map();
    for (let i = 0; i < windows.length; i += batch) {
      const some = windows.slice(i, i + batch);
      const tokens = await data.read(some, ckpt.config.vocab);
      const losses = await native("evaluation", () => ckpt.model.forwardLosses(tokens, some.length, data.context, opts));
      const mask = targetMask(tokens, some.length, data.context, opts);
      addToBuckets(sums, { tokens, losses, mask, B: some.length, T: data.context, eosId: ckpt.eosId, documentMask: opts.docMask === 1, bucket: o.bucket });
      onProgress?.(Math.min(i + batch, windows.length), windows.length);
    }
    const buckets = bucketsOf(sums, o.bucket);
    return { buckets, tokens: buckets.reduce((a, b) => a + b.tokens, 0), windows: windows.length, context: data.context };
  } finally {
    await data.close();
  }
}
