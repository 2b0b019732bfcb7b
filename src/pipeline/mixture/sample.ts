import { RuntimeFailure, UsageError } from "../../util/errors.ts";

/** One source's eligible documents, counted (their rows are in the plan's tables, plan-tables.ts). */
export interface SourceDocs {
  name: string;
  weight: number;
  maxEpochs: number;
  documents: number;
  /** their tokens, specials included */
  tokens: number;
}

/** How many of a source's documents are taken: whole passes, then a prefix of one more pass chosen by `target`. */
export interface PassPlan {
  /** the source's share of the mixture's tokens, apportioned by weight */
  targetTokens: number;
  fullPasses: number;
  /** the source's token target: the partial pass takes documents while that lands closer to it */
  target: number;
  /** whether a partial pass is needed after the full ones */
  partial: boolean;
}

export interface SourcePlan {
  name: string;
  targetShare: number;
  targetTokens: number;
  tokensAvailable: number;
  documentsAvailable: number;
  documentsSelected: number;
  tokensSelected: number;
  epochs: number;
}

/** A source whose selected tokens miss its target by more than this fraction is reported (manifest `warnings`). */
export const SHARE_TOLERANCE = 0.1;

/**
 * The most document passes one build may select. The plan lives in the work database, not in memory, so this is
 * no memory limit: it is far beyond the report's 2.3T tokens (a few billion documents), and refuses a max_epochs or
 * target_tokens that would run for days against a corpus far too small for it, with the numbers.
 */
export const MAX_PICKS = 10_000_000_000;

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

/**
 * Per-source token targets from the weights, then whole passes plus a seeded part of one more pass
 * (plan-tables.ts takes the documents). Documents are never cut to hit a target: the last one is taken if that lands
 * closer to the target.
 */
export function planPasses(sources: SourceDocs[], targetTokens: number | undefined): PassPlan[] {
  sources.forEach((s) => {
    if (s.tokens === 0) throw new RuntimeFailure(`source '${s.name}' has no documents left after filtering and dedup; remove it or relax the filters`);
  });
  const weightSum = sources.reduce((a, s) => a + s.weight, 0);
  const explicit = targetTokens !== undefined;
  const total = explicit ? targetTokens : Math.floor(Math.min(...sources.map((s) => (s.maxEpochs * s.tokens * weightSum) / s.weight)));
  const targets = apportion(total, sources.map((s) => s.weight));
  const picksNeeded = sources.reduce((a, s, i) => a + Math.ceil(Math.min(targets[i]! / s.tokens, s.maxEpochs)) * s.documents, 0);
  if (picksNeeded > MAX_PICKS) {
    const why = explicit ? `target_tokens ${targetTokens}` : `max_epochs (${[...new Set(sources.map((s) => s.maxEpochs))].join(", ")}) with no target_tokens`;
    throw new UsageError(
      `${why} asks for ${total.toLocaleString("en-US")} tokens: about ${picksNeeded.toLocaleString("en-US")} document passes over ` +
        `${sources.reduce((a, s) => a + s.documents, 0).toLocaleString("en-US")} documents, over the limit of ${MAX_PICKS.toLocaleString("en-US")}. ` +
        `Set target_tokens, or lower max_epochs`,
    );
  }
  return sources.map((source, i) => {
    let target = targets[i]!;
    const epochsNeeded = target / source.tokens;
    if (epochsNeeded > source.maxEpochs) {
      if (explicit) {
        throw new UsageError(
          `source '${source.name}': target_tokens gives it ${target} tokens but it has ${source.tokens}; that needs ${epochsNeeded.toFixed(2)} epochs, over max_epochs ${source.maxEpochs}. Lower target_tokens or its weight, or raise max_epochs`,
        );
      }
      target = Math.floor(source.maxEpochs * source.tokens); // only rounding can get here
    }
    const fullPasses = Math.floor(target / source.tokens);
    return { targetTokens: targets[i]!, fullPasses, target, partial: target > fullPasses * source.tokens };
  });
}

/** Each source's plan, from its counts, its passes and what the plan's tables took of it (plan-tables.ts fillPicks). */
export function sourcePlans(sources: SourceDocs[], passes: PassPlan[], taken: { documents: number; tokens: number }[]): SourcePlan[] {
  const weightSum = sources.reduce((a, s) => a + s.weight, 0);
  return sources.map((s, i) => ({
    name: s.name,
    targetShare: s.weight / weightSum,
    targetTokens: passes[i]!.targetTokens,
    tokensAvailable: s.tokens,
    documentsAvailable: s.documents,
    documentsSelected: taken[i]!.documents,
    tokensSelected: taken[i]!.tokens,
    epochs: taken[i]!.tokens / s.tokens,
  }));
}

/** Reads a source's picks' token counts in stream order, `count` from pick `first`. */
export type PickTokens = (source: number, first: number, count: number) => Promise<Uint32Array>;

const READ_PICKS = 65536;

/**
 * Interleaves the sources' picks largest-deficit-first, so every prefix of the stream is close to the target
 * mixture; ties go to the earlier source. Calls `emit(source, pick, start)` for each pick in stream order, with its
 * first position in the stream; reads each source's token counts a block at a time, so memory holds no plan.
 */
export async function interleave(plans: SourcePlan[], read: PickTokens, emit: (source: number, pick: number, start: number) => void): Promise<number> {
  const totalTarget = BigInt(plans.reduce((a, p) => a + p.tokensSelected, 0));
  const shares = plans.map((p) => BigInt(p.tokensSelected));
  const emitted = plans.map(() => 0n);
  const next = plans.map(() => 0);
  const blocks = plans.map((): { first: number; tokens: Uint32Array } => ({ first: 0, tokens: new Uint32Array(0) }));
  const count = plans.reduce((a, p) => a + p.documentsSelected, 0);
  let total = 0n;
  let position = 0;
  for (let k = 0; k < count; k++) {
    let best = -1;
    let bestDeficit = 0n;
    for (let i = 0; i < plans.length; i++) {
      if (next[i]! >= plans[i]!.documentsSelected) continue;
      const deficit = shares[i]! * total - emitted[i]! * totalTarget;
      if (best < 0 || deficit > bestDeficit) {
        best = i;
        bestDeficit = deficit;
      }
    }
    const pick = next[best]!++;
    const block = blocks[best]!;
    if (pick >= block.first + block.tokens.length) {
      block.first = pick;
      block.tokens = await read(best, pick, Math.min(READ_PICKS, plans[best]!.documentsSelected - pick));
      if (block.tokens.length === 0) throw new RuntimeFailure(`the plan's picks of source '${plans[best]!.name}' end at ${pick} of ${plans[best]!.documentsSelected}; rerun the build`);
    }
    const tokens = block.tokens[pick - block.first]!;
    emit(best, pick, position);
    position += tokens;
    emitted[best]! += BigInt(tokens);
    total += BigInt(tokens);
  }
  return position;
}
