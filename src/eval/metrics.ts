/**
 * Metrics as lm-evaluation-harness computes them: per row acc (argmax of the log-likelihoods is the gold
 * choice) and acc_norm (argmax of log-likelihood / the choice's length in characters: the harness divides by
 * Python's len() of the choice string, which counts code points); the mean over rows with the standard error
 * of the mean (sample standard deviation, ddof 1, over √n); subsets combined weighted by their size with the
 * pooled standard error (the harness's pooled_sample_stderr), or as a plain mean.
 */

/** First index of the maximum, as numpy's argmax. */
export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

export function mcRowMetrics(logprobs: readonly number[], choices: readonly string[], gold: number): { acc: number; acc_norm: number } {
  const lengths = choices.map((c) => [...c].length);
  return {
    acc: argmax(logprobs) === gold ? 1 : 0,
    acc_norm: argmax(logprobs.map((lp, i) => lp / lengths[i]!)) === gold ? 1 : 0,
  };
}

export interface MetricValue {
  value: number;
  stderr: number;
  n: number;
}

export function meanWithStderr(values: readonly number[]): MetricValue {
  const n = values.length;
  const mean = values.reduce((a, b) => a + b, 0) / Math.max(1, n);
  if (n < 2) return { value: mean, stderr: NaN, n };
  const variance = values.reduce((a, v) => a + (v - mean) ** 2, 0) / (n - 1);
  return { value: mean, stderr: Math.sqrt(variance / n), n };
}

/** Subsets into one score: weighted by size with the pooled standard error, or the plain mean of the subset scores. */
export function combine(parts: readonly MetricValue[], how: "weighted" | "mean"): MetricValue {
  const n = parts.reduce((a, p) => a + p.n, 0);
  if (parts.length === 1) return parts[0]!;
  if (how === "mean") {
    const value = parts.reduce((a, p) => a + p.value, 0) / parts.length;
    const stderr = Math.sqrt(parts.reduce((a, p) => a + p.stderr ** 2, 0)) / parts.length;
    return { value, stderr, n };
  }
  const value = parts.reduce((a, p) => a + p.value * p.n, 0) / Math.max(1, n);
  // pooled_sample_stderr: the subsets' variances pooled (ddof 1), as an error of the mean of all n rows.
  const pooled = parts.reduce((a, p) => a + (p.n - 1) * p.stderr ** 2 * p.n, 0) / Math.max(1, n - parts.length);
  return { value, stderr: Math.sqrt(pooled / n), n };
}
