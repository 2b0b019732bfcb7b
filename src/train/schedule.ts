/** Linear warmup to `lr`, then cosine decay to `minLr` at `decaySteps`; flat after. Steps are 1-based. */
export function learningRate(step: number, o: { lr: number; minLr: number; warmupSteps: number; decaySteps: number }): number {
  if (o.warmupSteps > 0 && step <= o.warmupSteps) return (o.lr * step) / o.warmupSteps;
  if (step >= o.decaySteps) return o.minLr;
  const progress = (step - o.warmupSteps) / Math.max(1, o.decaySteps - o.warmupSteps);
  return o.minLr + 0.5 * (o.lr - o.minLr) * (1 + Math.cos(Math.PI * progress));
}
