import type { Recipe } from "../../recipe/schema.ts";
import { RuntimeFailure, UsageError } from "../../util/errors.ts";
import type { BuildDb } from "../../util/duckdb.ts";
import { SKIP_REASONS, type SkipReason, tokenFilterSql } from "../stages/filters.ts";
import type { SourceStats } from "../output/manifest.ts";
import { fillPicks, PLAN_DOCS } from "./plan-tables.ts";
import { LENGTH_REASON, lengthDroppedSql, planLengthUpsampling } from "./length-upsampling.ts";
import { runStage, type ProgressSink } from "../progress.ts";
import { MAX_PICKS, planPasses, sourcePlans, type SourceDocs, type SourcePlan } from "./sample.ts";

/**
 * Zeroed counts for each source, filled by the build (or summed from partitions by the merge); `extraReasons[i]`:
 * source i's further skip reasons (its quality filters' rules), counted even when zero.
 */
export function emptyStats(sourceCount: number, extraReasons: string[][] = []): SourceStats[] {
  return Array.from({ length: sourceCount }, (_, i) => ({
    documentsRead: 0,
    skipped: Object.fromEntries([...SKIP_REASONS, ...(extraReasons[i] ?? [])].map((r) => [r, 0])),
    skippedRows: {},
    duplicatesWithin: 0,
    duplicatesAcross: 0,
    fileRows: [],
  }));
}

/** Why a source kept no document, from its counts: "100 rows read: 100 null_text". */
function whyEmpty(s: SourceStats): string {
  const reasons = Object.entries(s.skipped).filter(([, n]) => n > 0).map(([r, n]) => `${n} ${r}`);
  const dups = s.duplicatesWithin + s.duplicatesAcross;
  if (dups > 0) reasons.push(`${dups} duplicates`);
  return `${s.documentsRead} rows read${reasons.length ? `: ${reasons.join(", ")}` : ""}`;
}

/**
 * Before tokenising, with the documents counted: a recipe whose max_epochs (with no target_tokens) asks for more
 * document passes than a plan may hold is refused now, not after the longest stage. Without a token filter every
 * kept document is eligible, and the scarcest source by weight repeats max_epochs times, so the passes are at least
 * floor(max_epochs) times its documents (sample.ts refuses the rest, with exact counts, once tokenised).
 */
export function checkMixtureSize(recipe: Recipe, documentsBySource: number[]): void {
  if (recipe.target_tokens !== undefined || recipe.filters.min_tokens > 0 || recipe.filters.max_tokens !== undefined) return;
  const epochs = recipe.sources.map((s) => s.max_epochs ?? recipe.max_epochs);
  const passes = Math.min(...recipe.sources.map((_, i) => Math.floor(epochs[i]!) * (documentsBySource[i] ?? 0)));
  if (!(passes > MAX_PICKS)) return;
  const documents = documentsBySource.reduce((a, b) => a + b, 0);
  throw new UsageError(
    `max_epochs (${[...new Set(epochs)].join(", ")}) with no target_tokens asks for at least ${passes.toLocaleString("en-US")} document passes over ` +
      `${documents.toLocaleString("en-US")} documents, over the limit of ${MAX_PICKS.toLocaleString("en-US")}. Set target_tokens, or lower max_epochs`,
  );
}

/**
 * After dedup and tokenisation, the same for a build and a merge, over the plan_docs view (plan-tables.ts): the
 * token-count filter (counted in `stats`), each source's eligible documents, and the seeded mixture plan in `picks`.
 */
export async function selectMixture(db: BuildDb, recipe: Recipe, stats: SourceStats[], sink: ProgressSink): Promise<SourcePlan[]> {
  const specials = 1 + (recipe.tokenizer.add_bos ? 1 : 0);
  const tokenReason = tokenFilterSql(recipe.filters);
  // Length upsampling drops short documents after the token filter; its reason joins the filter's.
  const upsampling = await planLengthUpsampling(db, recipe, `${tokenReason} IS NULL`, specials);
  const reason = upsampling.some(Boolean) ? `coalesce(${tokenReason}, ${lengthDroppedSql()})` : tokenReason;
  upsampling.forEach((u, i) => {
    if (u) stats[i]!.lengthUpsampling = u;
  });
  const counts = await db.rows<{ s: number; reason: SkipReason | typeof LENGTH_REASON | null; n: bigint; t: bigint }>(
    `SELECT source_idx AS s, ${reason} AS reason, count(*) AS n, sum(tokens + ${specials}) AS t FROM ${PLAN_DOCS} GROUP BY ALL`,
  );
  const eligible = recipe.sources.map(() => ({ documents: 0, tokens: 0 }));
  for (const r of counts) {
    if (r.reason === LENGTH_REASON) continue; // counted with its histograms above
    if (r.reason) stats[r.s]!.skipped[r.reason]! += Number(r.n);
    else eligible[r.s] = { documents: Number(r.n), tokens: Number(r.t) };
  }
  const sourceDocs: SourceDocs[] = recipe.sources.map((s, i) => ({ name: s.name, weight: s.weight, maxEpochs: s.max_epochs ?? recipe.max_epochs, ...eligible[i]! }));
  sourceDocs.forEach((s, i) => {
    if (s.documents === 0) throw new RuntimeFailure(`source '${s.name}' has no documents left: ${whyEmpty(stats[i]!)}; remove it, fix its files or text_column, or relax the filters`);
  });
  return runStage(
    sink,
    "sample",
    async () => {
      const passes = planPasses(sourceDocs, recipe.target_tokens);
      // At most: every pass whole, the last one too.
      const total = sourceDocs.reduce((a, s, i) => a + (passes[i]!.fullPasses + (passes[i]!.partial ? 1 : 0)) * s.documents, 0);
      let shown = 0;
      const onProgress = (done: number) => {
        const now = performance.now();
        if (now - shown < 250) return;
        shown = now;
        sink({ type: "stage_progress", stage: "sample", done, total, unit: "documents" });
      };
      return sourcePlans(sourceDocs, passes, await fillPicks(db, sourceDocs, passes, recipe.seed, `${reason} IS NULL`, specials, onProgress));
    },
    (p) => ({ done: p.reduce((a, s) => a + s.documentsSelected, 0), unit: "documents selected" }),
  );
}
