import { RuntimeFailure, UsageError } from "../util/errors.ts";
import { keyedHash64 } from "../util/hash.ts";

export interface SourceDocs {
  name: string;
  weight: number;
  maxEpochs: number;
  /** Eligible documents: their ord in unique_docs, content hash and token count (specials included). */
  ords: number[];
  hashes: string[];
  tokens: number[];
}

export interface SourcePlan {
  name: string;
  targetShare: number;
  targetTokens: number;
  tokensAvailable: number;
  documentsAvailable: number;
  /** Selected documents in stream order, each with the pass (epoch) it belongs to. */
  picks: { ord: number; pass: number; tokens: number }[];
  tokensSelected: number;
  epochs: number;
}

/** A source whose selected tokens miss its target by more than this fraction is reported (manifest `warnings`). */
export const SHARE_TOLERANCE = 0.1;

/**
 * The most documents one build may select (every pass counted): the plan holds each pick in memory, so a
 * max_epochs or target_tokens far beyond the corpus is refused with the numbers rather than left to run.
 */
export const MAX_PICKS = 100_000_000;

/** Largest-remainder rounding of `total` by weights; ties go to the earlier source. */
export function apportion(total: number, weights: readonly number[]): number[] {
  const sum = weights.reduce((a, b) => a + b, 0);
  const exact = weights.map((w) => (total * w) / sum);
  const out = exact.map(Math.floor);
  let left = total - out.reduce((a, b) => a + b, 0);
  const order = exact.map((e, i) => ({ i, frac: e - Math.floor(e) })).sort((a, b) => b.frac - a.frac || a.i - b.i);
  for (const { i } of order) {
    if (left <= 0) break;
    out[i]!++;
    left--;
  }
  return out;
}

/** Document order for one pass over a source: a keyed hash of (seed, source, pass, document hash). */
function passOrder(seed: number, source: SourceDocs, pass: number): number[] {
  const keys = source.hashes.map((h, i) => ({ i, k: keyedHash64(seed, source.name, pass, h) }));
  keys.sort((a, b) => (a.k < b.k ? -1 : a.k > b.k ? 1 : a.i - b.i));
  return keys.map((k) => k.i);
}

/**
 * Per-source token targets from the weights, then whole passes plus a seeded part of one more pass.
 * Documents are never cut to hit a target: the last one is taken if that lands closer to the target.
 */
export function planMixture(sources: SourceDocs[], seed: number, targetTokens: number | undefined): SourcePlan[] {
  const available = sources.map((s) => s.tokens.reduce((a, b) => a + b, 0));
  sources.forEach((s, i) => {
    if (available[i] === 0) throw new RuntimeFailure(`source '${s.name}' has no documents left after filtering and dedup; remove it or relax the filters`);
  });
  const weightSum = sources.reduce((a, s) => a + s.weight, 0);
  const explicit = targetTokens !== undefined;
  const total = explicit
    ? targetTokens
    : Math.floor(Math.min(...sources.map((s, i) => (s.maxEpochs * available[i]! * weightSum) / s.weight)));
  const targets = apportion(total, sources.map((s) => s.weight));
  const picksNeeded = sources.reduce((a, s, i) => a + Math.ceil(Math.min(targets[i]! / available[i]!, s.maxEpochs)) * s.ords.length, 0);
  if (picksNeeded > MAX_PICKS) {
    const why = explicit ? `target_tokens ${targetTokens}` : `max_epochs (${[...new Set(sources.map((s) => s.maxEpochs))].join(", ")}) with no target_tokens`;
    throw new UsageError(
      `${why} asks for ${total.toLocaleString("en-US")} tokens: about ${picksNeeded.toLocaleString("en-US")} document passes over ` +
        `${sources.reduce((a, s) => a + s.ords.length, 0).toLocaleString("en-US")} documents, over the limit of ${MAX_PICKS.toLocaleString("en-US")}. ` +
        `Set target_tokens, or lower max_epochs`,
    );
  }
  return sources.map((source, i) => {
    const avail = available[i]!;
    let target = targets[i]!;
    const epochsNeeded = target / avail;
    if (epochsNeeded > source.maxEpochs) {
      if (explicit) {
        throw new UsageError(
          `source '${source.name}': target_tokens gives it ${target} tokens but it has ${avail}; that needs ${epochsNeeded.toFixed(2)} epochs, over max_epochs ${source.maxEpochs}. Lower target_tokens or its weight, or raise max_epochs`,
        );
      }
      target = Math.floor(source.maxEpochs * avail); // only rounding can get here
    }
    const picks: SourcePlan["picks"] = [];
    const fullPasses = Math.floor(target / avail);
    for (let pass = 0; pass < fullPasses; pass++) {
      for (const d of passOrder(seed, source, pass)) picks.push({ ord: source.ords[d]!, pass, tokens: source.tokens[d]! });
    }
    let selected = fullPasses * avail;
    if (selected < target) {
      for (const d of passOrder(seed, source, fullPasses)) {
        const len = source.tokens[d]!;
        const short = target - selected;
        if (short <= 0 || len - short > short) break; // taking it would land farther from the target
        picks.push({ ord: source.ords[d]!, pass: fullPasses, tokens: len });
        selected += len;
      }
    }
    return {
      name: source.name,
      targetShare: source.weight / weightSum,
      targetTokens: targets[i]!,
      tokensAvailable: avail,
      documentsAvailable: source.ords.length,
      picks,
      tokensSelected: selected,
      epochs: selected / avail,
    };
  });
}

/**
 * Interleaves the sources' picks largest-deficit-first, so every prefix of the stream is close to the
 * target mixture; ties go to the earlier source. Returns [sourceIndex, pickIndex] pairs.
 */
export function interleave(plans: SourcePlan[]): Uint32Array {
  const totalTarget = BigInt(plans.reduce((a, p) => a + p.tokensSelected, 0));
  const shares = plans.map((p) => BigInt(p.tokensSelected));
  const emitted = plans.map(() => 0n);
  const next = plans.map(() => 0);
  const count = plans.reduce((a, p) => a + p.picks.length, 0);
  const out = new Uint32Array(count * 2);
  let total = 0n;
  for (let k = 0; k < count; k++) {
    let best = -1;
    let bestDeficit = 0n;
    for (let i = 0; i < plans.length; i++) {
      if (next[i]! >= plans[i]!.picks.length) continue;
      const deficit = shares[i]! * total - emitted[i]! * totalTarget;
      if (best < 0 || deficit > bestDeficit) {
        best = i;
        bestDeficit = deficit;
      }
    }
    const pick = plans[best]!.picks[next[best]!]!;
    out[2 * k] = best;
    out[2 * k + 1] = next[best]!++;
    emitted[best]! += BigInt(pick.tokens);
    total += BigInt(pick.tokens);
  }
  return out;
}
