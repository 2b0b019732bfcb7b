/**
 * The learning rate of every step, a pure function of the recorded schedule (steps are 1-based): linear warmup to
 * `lr` over `warmupSteps`, then
 *   cosine    cosine decay to `minLr` at `decaySteps`;
 *   linear    linear decay to `minLr` at `decaySteps`;
 *   constant  `lr` to the end;
 *   wsd       warmup-stable-decay (MiniCPM; Hägele et al., "Scaling Laws and Compute-Optimal Training Beyond Fixed
 *             Training Durations"): `lr` until the last `decayFraction` of `decaySteps`, then down to `minLr` by
 *             `decayShape`: linear (1 - p), cosine ((1 + cos πp) / 2) or 1-sqrt (1 - √p), p the decay's progress.
 * Flat at `minLr` after `decaySteps` (cosine, linear, wsd).
 */
export const SCHEDULES = ["cosine", "wsd", "linear", "constant"] as const;
export const DECAY_SHAPES = ["linear", "cosine", "1-sqrt"] as const;

export interface Schedule {
  lr: number;
  minLr: number;
  warmupSteps: number;
  decaySteps: number;
  /** default cosine */
  kind?: (typeof SCHEDULES)[number];
  /** wsd: the share of decaySteps the decay takes (default 0.1) */
  decayFraction?: number;
  /** wsd: the decay's shape (default 1-sqrt) */
  decayShape?: (typeof DECAY_SHAPES)[number];
}

/** wsd: the first step of the decay (its steps are decayStart+1 .. decaySteps). */
export function decayStart(o: Schedule): number {
  const length = Math.max(1, Math.round((o.decayFraction ?? 0.1) * o.decaySteps));
  return Math.max(o.warmupSteps, o.decaySteps - length);
}

export function learningRate(step: number, o: Schedule): number {
  if (o.warmupSteps > 0 && step <= o.warmupSteps) return (o.lr * step) / o.warmupSteps;
  const kind = o.kind ?? "cosine";
  if (kind === "constant") return o.lr;
  if (step >= o.decaySteps) return o.minLr;
  if (kind === "wsd") {
    const start = decayStart(o);
    if (step <= start) return o.lr;
    const p = (step - start) / Math.max(1, o.decaySteps - start);
    const shape = o.decayShape ?? "1-sqrt";
    const f = shape === "linear" ? 1 - p : shape === "cosine" ? 0.5 * (1 + Math.cos(Math.PI * p)) : 1 - Math.sqrt(p);
    return o.minLr + (o.lr - o.minLr) * f;
  }
  const progress = (step - o.warmupSteps) / Math.max(1, o.decaySteps - o.warmupSteps);
  if (kind === "linear") return o.minLr + (o.lr - o.minLr) * (1 - progress);
  return o.minLr + 0.5 * (o.lr - o.minLr) * (1 + Math.cos(Math.PI * progress));
}
