/**
 * The passes over batches that training and evaluation share: one optimizer step's gradient over the ranks'
 * micro-batches, and the mean loss over windows.
 */
import { native, type NativeModel, type RunOptions } from "../native/addon.ts";
import { RuntimeFailure } from "../util/errors.ts";
import type { RankGroup } from "./distributed.ts";
import { countTargets, maskedLossSum, targetMask, type TokenData } from "./data.ts";

/** One step's share of a rank: its micro-batches' tokens, and the targets in them. */
export interface StepBatches {
  first: number;
  batches: Int32Array[];
  local: number;
}

/** A step's batches read ahead by the step before it, with the step's target count over every rank. */
export interface PreparedStep {
  batches: StepBatches;
  targets: number;
}

/** Reads this rank's micro-batches of the step whose first window is `first`: r, r + R, ... of the seeded stream. */
async function readStepBatches(
  data: TokenData,
  s: { first: number; microBatches: number; microBatch: number; opts: RunOptions; vocab: number; group?: RankGroup },
): Promise<StepBatches> {
  const batches: Int32Array[] = [];
  let local = 0;
  const rank = s.group?.dataRank ?? 0;
  const ranks = s.group?.dataRanks ?? 1;
  for (let a = rank; a < s.microBatches; a += ranks) {
    const windows = Array.from({ length: s.microBatch }, (_, b) => data.trainWindow(s.first + a * s.microBatch + b));
    const tokens = await data.read(windows, s.vocab);
    local += countTargets(tokens, s.microBatch, data.context, s.opts, s.group?.comm);
    batches.push(tokens);
  }
  return { first: s.first, batches, local };
}

/**
 * The gradient of one optimizer step: the training windows first, first + 1, ... of the seeded stream, in
 * `microBatches` micro-batches of `microBatch` rows, summed into the model's (zeroed) gradients, each
 * scaled by 1 / (positions with a target in the whole step), so the result is the mean over the step's tokens
 * whatever the split. With a group of R ranks, rank r computes micro-batches r, r + R, ... of the same stream
 * and the model reduces the gradients (the step's last backward starts it, bucket by bucket); the counts, the
 * losses and the ranks' stop requests are summed over the ranks. Returns the step's mean loss, its count, and
 * whether any rank asked to stop.
 *
 * With several ranks the step makes one host sum, after its backward: its losses and stop requests, and the
 * target counts of the next step (`nextFirst`: its first window), whose batches it reads then and returns, to be
 * passed back as `prepared`. So nothing collective comes between the optimizer step and the next forward, which
 * reads each bucket of gathered weights as it arrives (native data_parallel.h). Without `prepared` the counts
 * take a sum of their own first.
 */
export async function accumulateGradients(
  model: NativeModel,
  data: TokenData,
  s: {
    first: number;
    microBatches: number;
    microBatch: number;
    opts: RunOptions;
    vocab: number;
    label: string;
    group?: RankGroup;
    /** reduce buckets during the last backward (default) rather than after it */
    overlap?: boolean;
    stopRequested?: boolean;
    /** this step's batches and the step's target count over every rank, from the previous step's `next` */
    prepared?: PreparedStep;
    nextFirst?: number;
  },
): Promise<{ loss: number; targets: number; stop: boolean; next?: PreparedStep }> {
  const T = data.context;
  // The micro-batches are shared by the data-parallel groups (rings, under context parallelism, whose members
  // read the same rows and each count only the targets of the tokens they hold, as their losses are).
  const shape = { microBatches: s.microBatches, microBatch: s.microBatch, opts: s.opts, vocab: s.vocab, group: s.group };
  // With a communicator (several ranks, or one under --collectives) the step takes the data-parallel path.
  const parallel = s.group?.parallel ?? false;
  let own: StepBatches;
  let targets: number;
  if (s.prepared && s.prepared.batches.first === s.first) {
    own = s.prepared.batches;
    targets = s.prepared.targets;
  } else {
    own = await readStepBatches(data, { first: s.first, ...shape });
    [targets] = parallel ? ((await s.group!.sum([own.local], `${s.label}: summing the target counts over the ranks`)) as [number]) : [own.local];
  }
  if (targets === 0) throw new RuntimeFailure(`${s.label}: the batch has no positions with a target`);
  model.zeroGrad();
  let lossSum = 0;
  for (const [i, tokens] of own.batches.entries()) {
    // The step's last micro-batch reduces each gradient bucket as soon as its backward has finished it.
    const reduce = parallel && s.overlap !== false && i === own.batches.length - 1;
    const r = await native(s.label, () => model.forwardBackward(tokens, s.microBatch, T, s.opts, 1 / targets, reduce));
    lossSum += r.lossSum;
  }
  if (!parallel) return { loss: lossSum / targets, targets, stop: false };
  const next = s.nextFirst === undefined ? undefined : await readStepBatches(data, { first: s.nextFirst, ...shape });
  const [sum, stops, nextTargets] = await s.group!.sum([lossSum, s.stopRequested ? 1 : 0, next?.local ?? 0], `${s.label}: summing the losses over the ranks`);
  return { loss: sum! / targets, targets, stop: stops! > 0, ...(next ? { next: { batches: next, targets: nextTargets! } } : {}) };
}

/**
 * Mean loss over windows, with the training masks; the one evaluation loop of training and `eval`. With a group,
 * rank r evaluates batches r, r + R, ... and the sums are taken over the ranks.
 */
export async function evaluate(
  model: NativeModel,
  data: TokenData,
  batch: number,
  opts: RunOptions,
  vocab: number,
  windows: ArrayLike<number>,
  onProgress?: (done: number, total: number) => void,
  group?: RankGroup,
): Promise<{ mean: number; tokens: number }> {
  let sum = 0;
  let count = 0;
  const rank = group?.dataRank ?? 0;
  const ranks = group?.dataRanks ?? 1;
  // Under context parallelism each ring member gets its own positions' losses (0 at the others'), and its mask
  // marks only those: summed over the ring, the rows'.
  for (let i = rank * batch; i < windows.length; i += batch * ranks) {
    const chunk = Array.from({ length: Math.min(batch, windows.length - i) }, (_, j) => windows[i + j]!);
    const tokens = await data.read(chunk, vocab);
    const losses = await native("evaluation", () => model.forwardLosses(tokens, chunk.length, data.context, opts));
    const r = maskedLossSum(losses, targetMask(tokens, chunk.length, data.context, opts, group?.comm));
    sum += r.sum;
    count += r.count;
    onProgress?.(i + chunk.length, windows.length);
  }
  if (group?.parallel) [sum, count] = (await group.sum([sum, count], "evaluation: summing the losses over the ranks")) as [number, number];
  return { mean: sum / Math.max(1, count), tokens: count };
}
