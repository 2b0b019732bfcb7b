/** Comparing training runs that should follow one trajectory: their metrics step by step, and their weights. */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { readSafetensors } from "../../src/train/safetensors.ts";

export type Metric = { step: number; loss?: number; grad_norm?: number; eval_loss?: number };

export async function metrics(run: string): Promise<Metric[]> {
  return (await readFile(join(run, "metrics.jsonl"), "utf8")).trim().split("\n").map((l) => JSON.parse(l));
}

export function assertClose(a: number, b: number, rel: number, what: string): void {
  assert.ok(Math.abs(a - b) <= rel * Math.max(Math.abs(a), Math.abs(b)), `${what}: ${a} vs ${b}`);
}

/** The same steps, and loss, gradient norm and held-out loss within `rel` of each other at each. */
export function assertSameTrajectory(got: Metric[], want: Metric[], label: string, rel = 1e-5): void {
  assert.equal(got.length, want.length, label);
  got.forEach((g, i) => {
    const w = want[i]!;
    assert.equal(g.step, w.step, label);
    for (const key of ["loss", "grad_norm", "eval_loss"] as const) {
      if (w[key] !== undefined) assertClose(g[key]!, w[key]!, rel, `${label} step ${g.step} ${key}`);
    }
  });
}

/** The largest absolute difference between two checkpoints' weights. */
export async function maxWeightDifference(a: string, b: string): Promise<number> {
  const [x, y] = await Promise.all([readSafetensors(join(a, "model.safetensors")), readSafetensors(join(b, "model.safetensors"))]);
  let worst = 0;
  for (const [name, t] of x) {
    const u = y.get(name)!;
    for (let i = 0; i < t.data.length; i++) worst = Math.max(worst, Math.abs(t.data[i]! - u.data[i]!));
  }
  return worst;
}
