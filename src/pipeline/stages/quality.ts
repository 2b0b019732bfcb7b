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
import { HASH_KEYS, HASH_NO_WORDS, HASH_NOT_DONE, loadAddon } from "../../native/addon.ts";
import { QUALITY_PARAMS, QUALITY_PRESET_BITS, QUALITY_RULES, qualityReason, type QualityPreset } from "../../recipe/quality-presets.ts";
import { type MinhashSpec, minhashSpec, qualityThresholds, type Recipe } from "../../recipe/schema.ts";
import type { BuildDb } from "../../util/duckdb.ts";
import { RuntimeFailure } from "../../util/errors.ts";
import { inOrder } from "../../util/in-order.ts";
import { sqlString } from "../../util/sql.ts";
import { DOCUMENTS } from "../schema.ts";
import { appendBandKeys, bandKeyColumns, ROW_BANDS } from "./near-dedup.ts";
import { prepareBytesForShingles } from "./near-dedup-text.ts";

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

/**
 * The passing texts qualityCheckAndHash left unhashed hold non-ASCII: NFKC and lower case here (ICU), then their band
 * keys from the addon, written into `result` at their places.
 */
async function hashTheRest(texts: Uint8Array[], rules: Uint16Array, result: { keys: BigUint64Array; hashed: Uint8Array }, spec: MinhashSpec, threads: number): Promise<void> {
  const rest: number[] = [];
  rules.forEach((rule, i) => {
    if (rule === 0 && result.hashed[i] === HASH_NOT_DONE) rest.push(i);
  });
  if (rest.length === 0) return;
  const sub = await loadAddon().minhashBands(rest.map((i) => prepareBytesForShingles(texts[i]!)), spec, threads);
  rest.forEach((i, j) => {
    result.keys.set(sub.keys.subarray(j * spec.bands, (j + 1) * spec.bands), i * spec.bands);
    result.hashed[i] = sub.shingled[j] ? HASH_KEYS : HASH_NO_WORDS;
  });
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
    ? await db.appender(ROW_BANDS, bandKeyColumns("doc_row", minhash.bands))
    : undefined;
  let checked = 0;
  let removed = 0;
  try {
    // Batches are rowid ranges: each scans only its own row groups. While one batch's results are stored, the next
    // two are read and judged by the addon (inOrder); the reads queue on the connection, one at a time. Texts come
    // as their UTF-8 bytes (encode), which the addon takes as they are.
    let reading: Promise<unknown> = Promise.resolve();
    const judge = async (k: number) => {
      const lo = BigInt(k * BATCH_ROWS);
      const read = reading.catch(() => undefined).then(() =>
        db.columns(`SELECT rowid AS id, source_idx AS s, encode(text) AS text FROM ${DOCUMENTS} WHERE ${where} AND rowid >= ${lo} AND rowid < ${lo + BigInt(BATCH_ROWS)} ORDER BY rowid`),
      );
      reading = read;
      const [ids, sources, texts] = (await read) as [bigint[], number[], Uint8Array[]];
      const failure = (what: string) => (error: Error) => {
        throw new RuntimeFailure(`${what} on rows ${lo} to ${lo + BigInt(BATCH_ROWS) - 1n}: ${error.message}`);
      };
      const presets = Uint8Array.from(sources, (s) => masks[s]!);
      const judged = minhash
        ? await addon.qualityCheckAndHash(texts, presets, params, threads, minhash).catch(failure("quality filters and MinHash"))
        : { rules: await addon.qualityCheck(texts, presets, params, threads).catch(failure("quality filters")) };
      if ("keys" in judged) await hashTheRest(texts, judged.rules, judged, minhash!, threads).catch(failure("MinHash"));
      return { ids, judged };
    };
    const batches = last === null ? 0 : Number(last / BigInt(BATCH_ROWS)) + 1;
    await inOrder(batches, 2, judge, ({ ids, judged }) => {
      const { rules } = judged;
      const failed: number[] = [];
      rules.forEach((rule, i) => {
        if (rule !== 0) failed.push(i);
      });
      app.appendColumns([failed.map((i) => ids[i]!), failed.map((i) => rules[i]! - 1)]);
      if (bands && "keys" in judged) appendBandKeys(bands, ids, { keys: judged.keys, shingled: judged.hashed.map((h) => (h === HASH_KEYS ? 1 : 0)) }, minhash!.bands);
      removed += failed.length;
      checked += ids.length;
      onProgress?.(checked, Number(total));
    });
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
