/**
 * The quality filters (recipe `filters: { gopher_quality, gopher_repetition, c4, fineweb }`), after the text
 * filters and before decontamination and dedup, as datatrove orders them. The rules run in the native addon
 * (native/src/text/quality.cpp, cx_quality_check) over batches of rows read by rowid; DuckDB holds the results
 * and sets each failing row's skip reason (`preset.rule`, e.g. `gopher_repetition.top_2_gram`), which the manifest
 * counts per source and samples by file and row. A row's result depends only on its text and the thresholds:
 * the same for any worker count, and for a partition as for a single build.
 *
 * With `dedup.minhash` on, the rows that pass are hashed into their MinHash band keys here too, while their text is
 * in hand (ROW_BANDS, by doc_row): near-dedup joins those keys to the documents dedup keeps instead of reading
 * every text a second time.
 */
import { loadAddon } from "../../native/addon.ts";
import { QUALITY_PARAMS, QUALITY_PRESET_BITS, QUALITY_RULES, qualityReason, type QualityPreset } from "../../recipe/quality-presets.ts";
import { minhashSpec, qualityThresholds, type Recipe } from "../../recipe/schema.ts";
import type { BuildDb } from "../../util/duckdb.ts";
import { RuntimeFailure } from "../../util/errors.ts";
import { sqlString } from "../../util/sql.ts";
import { DOCUMENTS } from "../schema.ts";
import { appendBandKeys, ROW_BANDS } from "./near-dedup.ts";
import { prepareForShingles } from "./near-dedup-text.ts";

/** Rows sent to the addon per call. */
const BATCH_ROWS = 8192;

/** Each source's presets (the recipe's that are on, less what the source's own `filters` leaves out). */
export function sourcePresets(recipe: Recipe): QualityPreset[][] {
  const on = [...qualityThresholds(recipe.filters).keys()];
  return recipe.sources.map((s) => {
    const own = s.filters;
    return own === false ? [] : own ? on.filter((p) => own.includes(p)) : on;
  });
}

/** The skip reasons a source can get from its presets, for its manifest counts (zero included). */
export function qualityReasons(recipe: Recipe): string[][] {
  return sourcePresets(recipe).map((presets) => QUALITY_RULES.filter(([p]) => presets.includes(p)).map(qualityReason));
}

export interface QualityResult {
  /** rows checked, and rows that failed */
  checked: number;
  removed: number;
  /** the sources whose passing rows' band keys are in ROW_BANDS (none without dedup.minhash) */
  hashedSources: number[];
}

export async function qualityFilter(db: BuildDb, recipe: Recipe, threads: number, onProgress?: (done: number, total: number) => void): Promise<QualityResult> {
  const thresholds = qualityThresholds(recipe.filters);
  const masks = sourcePresets(recipe).map((presets) => presets.reduce((m, p) => m | QUALITY_PRESET_BITS[p], 0));
  const filtered = masks.flatMap((m, i) => (m ? [i] : []));
  if (thresholds.size === 0 || filtered.length === 0) return { checked: 0, removed: 0, hashedSources: [] };
  const minhash = minhashSpec(recipe.dedup.minhash);
  const params = Float64Array.from(QUALITY_PARAMS, (q) => thresholds.get(q.preset)?.[q.name] ?? q.default);
  const addon = loadAddon();
  const where = `skip_reason IS NULL AND source_idx IN (${filtered.join(", ")})`;
  const { total, last } = await db.one<{ total: bigint; last: bigint | null }>(`SELECT count(*) AS total, max(rowid) AS last FROM ${DOCUMENTS} WHERE ${where}`);
  const app = await db.appender("quality_failed", [
    ["doc_row", "BIGINT"],
    ["rule", "INTEGER"],
  ]);
  const bands = minhash
    ? await db.appender(ROW_BANDS, [
        ["doc_row", "BIGINT"],
        ["band", "INTEGER"],
        ["key", "BIGINT"],
      ])
    : undefined;
  let checked = 0;
  let removed = 0;
  try {
    // Rowid ranges: each batch scans only its own row groups. The next batch is read while the addon judges this one.
    const read = (lo: bigint) =>
      db.rows<{ id: bigint; s: number; text: string }>(
        `SELECT rowid AS id, source_idx AS s, text FROM ${DOCUMENTS} WHERE ${where} AND rowid >= ${lo} AND rowid < ${lo + BigInt(BATCH_ROWS)} ORDER BY rowid`,
      );
    let next = last !== null ? read(0n) : undefined;
    for (let lo = 0n; last !== null && lo <= last; lo += BigInt(BATCH_ROWS)) {
      const rows = await next!;
      next = lo + BigInt(BATCH_ROWS) <= last ? read(lo + BigInt(BATCH_ROWS)) : undefined;
      next?.catch(() => undefined); // reported when the next turn awaits it; this keeps a failure below from leaving it unhandled
      if (rows.length === 0) continue;
      const texts = rows.map((r) => r.text);
      const rules = await addon.qualityCheck(texts, Uint8Array.from(rows, (r) => masks[r.s]!), params, threads).catch((error: Error) => {
        throw new RuntimeFailure(`quality filters on rows ${lo} to ${lo + BigInt(BATCH_ROWS) - 1n}: ${error.message}`);
      });
      const failed: number[] = [];
      rules.forEach((rule, i) => {
        if (rule !== 0) failed.push(i);
      });
      app.appendColumns([failed.map((i) => rows[i]!.id), failed.map((i) => rules[i]! - 1)]);
      if (minhash && bands) {
        const passed = rows.filter((_, i) => rules[i] === 0);
        const hashed = await addon.minhashBands(passed.map((r) => prepareForShingles(r.text)), minhash, threads).catch((error: Error) => {
          throw new RuntimeFailure(`MinHash of rows ${lo} to ${lo + BigInt(BATCH_ROWS) - 1n}: ${error.message}`);
        });
        appendBandKeys(bands, passed.map((r) => r.id), hashed, minhash.bands);
      }
      removed += failed.length;
      checked += rows.length;
      onProgress?.(checked, Number(total));
    }
    app.close();
    bands?.close();
  } catch (error) {
    app.abandon();
    bands?.abandon();
    throw error;
  }
  const names = QUALITY_RULES.map((r, i) => `(${i}, ${sqlString(qualityReason(r))})`).join(", ");
  await db.run(
    `UPDATE ${DOCUMENTS} AS d SET skip_reason = f.reason
     FROM (SELECT q.doc_row, n.reason FROM quality_failed q JOIN (VALUES ${names}) n(rule, reason) USING (rule)) f
     WHERE d.rowid = f.doc_row`,
  );
  await db.run(`DROP TABLE quality_failed`);
  return { checked, removed, hashedSources: minhash ? filtered : [] };
}
