/**
 * Length upsampling (Fu et al. 2024, "Data Engineering for Scaling Language Models to 128K Context"): per source,
 * documents shorter than `short_below` tokens are downsampled to exactly round(keep_short × their count), chosen by a
 * seeded key, so long documents carry more of each source's share while the sources keep their weights. Documents
 * are never cut. The dropped ones are listed in a table the mixture plan's eligibility reads (reason
 * `length_upsampled`), counted per source, and each source's token-length histogram is kept before and after.
 */
import type { Recipe } from "../../recipe/schema.ts";
import type { BuildDb } from "../../util/duckdb.ts";
import { sqlString } from "../../util/sql.ts";
import { PLAN_DOCS } from "./plan-tables.ts";

export const LENGTH_DROPPED = "length_dropped";
export const LENGTH_REASON = "length_upsampled";

/** The histogram's bins of document length in tokens (EOS and BOS included), as long-context reports draw them. */
export const LENGTH_BINS = [
  { label: "<4K", below: 4096 },
  { label: "4K-32K", below: 32768 },
  { label: "32K-128K", below: 131072 },
  { label: "128K-1M", below: 1048576 },
  { label: ">=1M", below: Infinity },
] as const;

export interface LengthUpsampling {
  short_below: number;
  keep_short: number;
}

export interface LengthHistogram {
  /** per bin: documents and their tokens */
  documents: Record<string, number>;
  tokens: Record<string, number>;
}

export interface LengthUpsamplingStats extends LengthUpsampling {
  short_documents: number;
  short_kept: number;
  documents_dropped: number;
  before: LengthHistogram;
  after: LengthHistogram;
}

/** Each source's setting: its own (`false`: none), else the recipe's, else none. */
export function lengthUpsamplingOf(recipe: Recipe): (LengthUpsampling | undefined)[] {
  return recipe.sources.map((s) => {
    if (s.length_upsampling === false) return undefined;
    const base = recipe.length_upsampling;
    if (!base && !s.length_upsampling) return undefined;
    return { short_below: s.length_upsampling?.short_below ?? base?.short_below ?? 4096, keep_short: s.length_upsampling?.keep_short ?? base?.keep_short ?? 0.1 };
  });
}

const binSql = (length: string) =>
  `CASE ${LENGTH_BINS.filter((b) => Number.isFinite(b.below)).map((b) => `WHEN ${length} < ${b.below} THEN ${sqlString(b.label)}`).join(" ")} ELSE ${sqlString(LENGTH_BINS[LENGTH_BINS.length - 1]!.label)} END`;

function emptyHistogram(): LengthHistogram {
  return { documents: Object.fromEntries(LENGTH_BINS.map((b) => [b.label, 0])), tokens: Object.fromEntries(LENGTH_BINS.map((b) => [b.label, 0])) };
}

/**
 * Fills LENGTH_DROPPED with the short documents each upsampled source does not keep, among those `eligible` (an SQL
 * condition over PLAN_DOCS: the token filter passed), and returns each source's counts and histograms (undefined
 * for a source without upsampling). The order a source keeps its short documents in is the first 64 bits of
 * sha256(seed, source, "length_upsampling", document hash): a pure function of the recipe and the text, so the same
 * whatever the worker or partition count.
 */
export async function planLengthUpsampling(db: BuildDb, recipe: Recipe, eligible: string, specials: number): Promise<(LengthUpsamplingStats | undefined)[]> {
  const settings = lengthUpsamplingOf(recipe);
  await db.run(`CREATE OR REPLACE TEMP TABLE ${LENGTH_DROPPED} (source_idx INTEGER, file_idx INTEGER, row_idx BIGINT)`);
  if (settings.every((s) => s === undefined)) return settings.map(() => undefined);
  const length = `(tokens + ${specials})`;
  const out: (LengthUpsamplingStats | undefined)[] = [];
  for (const [i, setting] of settings.entries()) {
    if (!setting) {
      out.push(undefined);
      continue;
    }
    const source = recipe.sources[i]!.name;
    const short = `source_idx = ${i} AND ${eligible} AND ${length} < ${setting.short_below}`;
    const [count] = await db.rows<{ n: bigint }>(`SELECT count(*) AS n FROM ${PLAN_DOCS} WHERE ${short}`);
    const shortDocuments = Number(count?.n ?? 0);
    const kept = Math.round(setting.keep_short * shortDocuments);
    const key = `('0x' || sha256(${sqlString(String(recipe.seed))} || chr(0) || ${sqlString(source)} || chr(0) || 'length_upsampling' || chr(0) || doc_hash)[1:16])::UBIGINT`;
    await db.run(
      `INSERT INTO ${LENGTH_DROPPED} SELECT source_idx, file_idx, row_idx FROM (
         SELECT source_idx, file_idx, row_idx, row_number() OVER (ORDER BY ${key}, file_idx, row_idx) AS r FROM ${PLAN_DOCS} WHERE ${short}
       ) WHERE r > ${kept}`,
    );
    const before = emptyHistogram();
    const after = emptyHistogram();
    const rows = await db.rows<{ bin: string; dropped: boolean; n: bigint; t: bigint }>(
      `SELECT ${binSql(length)} AS bin, ${LENGTH_DROPPED}.row_idx IS NOT NULL AS dropped, count(*) AS n, sum(${length}) AS t
       FROM ${PLAN_DOCS} LEFT JOIN ${LENGTH_DROPPED} USING (source_idx, file_idx, row_idx)
       WHERE source_idx = ${i} AND ${eligible} GROUP BY ALL`,
    );
    for (const r of rows) {
      before.documents[r.bin]! += Number(r.n);
      before.tokens[r.bin]! += Number(r.t);
      if (!r.dropped) {
        after.documents[r.bin]! += Number(r.n);
        after.tokens[r.bin]! += Number(r.t);
      }
    }
    out.push({ ...setting, short_documents: shortDocuments, short_kept: kept, documents_dropped: shortDocuments - kept, before, after });
  }
  return out;
}

/** The SQL reason of a PLAN_DOCS row that length upsampling dropped, or NULL. */
export function lengthDroppedSql(): string {
  return `CASE WHEN EXISTS (SELECT 1 FROM ${LENGTH_DROPPED} d WHERE d.source_idx = ${PLAN_DOCS}.source_idx AND d.file_idx = ${PLAN_DOCS}.file_idx AND d.row_idx = ${PLAN_DOCS}.row_idx) THEN ${sqlString(LENGTH_REASON)} END`;
}
