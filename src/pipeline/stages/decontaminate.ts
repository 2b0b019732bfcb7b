/**
 * Decontamination against benchmarks, as GPT-3, OLMo and dolma do it: every evaluation row of the recipe's tasks
 * (the split `eval --tasks` scores, not the few-shot one) is rendered as the model would see it (its prompt and its
 * choices or reference answer), normalised, cut into n-grams of words; a training document that shares one n-gram
 * with them is removed (skip reason `contaminated`, counted per source in the manifest and MIXTURE.md).
 *
 * Normalisation: Unicode NFKC, lower case; a word is a run of letters and digits, or one CJK character (Han, kana,
 * Hangul), so Chinese benchmarks, written without spaces, are cut into characters; punctuation and whitespace
 * separate words and are dropped. An evaluation text shorter than n words contributes no n-gram.
 */
import { dirname, isAbsolute, resolve } from "node:path";
import type { HubClient } from "../../hub/client.ts";
import type { Recipe } from "../../recipe/schema.ts";
import { loadTaskData, type TaskLock } from "../../tasks/dataset.ts";
import { loadTask } from "../../tasks/load.ts";
import { evaluationTexts } from "../../tasks/requests.ts";
import type { BuildDb } from "../../util/duckdb.ts";
import { UsageError } from "../../util/errors.ts";
import type { ProgressSink } from "../progress.ts";
import { DOCUMENTS } from "../schema.ts";

export const NORMALIZATION = "NFKC, lower case; words are runs of letters/digits or single CJK characters; punctuation and whitespace dropped";

const WORD = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Hangul}]|[\p{L}\p{N}\p{M}]+/gu;

export function words(text: string): string[] {
  return text.normalize("NFKC").toLowerCase().match(WORD) ?? [];
}

/** A 53-bit hash of an n-gram (two 32-bit lanes): a Set of numbers holds millions of n-grams in little memory. */
function gramHash(ws: readonly string[], from: number, n: number): number {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = from; i < from + n; i++) {
    const w = ws[i]!;
    for (let j = 0; j < w.length; j++) {
      const c = w.charCodeAt(j);
      h1 = Math.imul(h1 ^ c, 2654435761);
      h2 = Math.imul(h2 ^ c, 1597334677);
    }
    h1 = Math.imul(h1 ^ 0x20, 2654435761); // the separator between words
    h2 = Math.imul(h2 ^ 0x20, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}

export function ngramSet(texts: Iterable<string>, n: number): Set<number> {
  const set = new Set<number>();
  for (const t of texts) {
    const ws = words(t);
    for (let i = 0; i + n <= ws.length; i++) set.add(gramHash(ws, i, n));
  }
  return set;
}

export function overlaps(text: string, grams: Set<number>, n: number): boolean {
  const ws = words(text);
  for (let i = 0; i + n <= ws.length; i++) if (grams.has(gramHash(ws, i, n))) return true;
  return false;
}

export interface DecontaminationReport {
  ngram: number;
  normalization: string;
  tasks: { task: string; repo: string; commit: string; evaluation_rows: number; ngrams: number }[];
  documents_removed: number;
}

/** Marks every document that overlaps the recipe's benchmarks; returns what it read (for the lock) and did. */
export async function decontaminate(
  db: BuildDb,
  client: HubClient,
  recipe: Recipe,
  recipePath: string,
  locked: TaskLock[] | undefined,
  sink: ProgressSink,
): Promise<{ report: DecontaminationReport; lock: TaskLock[] } | undefined> {
  const spec = recipe.decontaminate;
  if (!spec) return undefined;
  const n = spec.ngram;
  const grams = new Set<number>();
  const report: DecontaminationReport = { ngram: n, normalization: NORMALIZATION, tasks: [], documents_removed: 0 };
  const lock: TaskLock[] = [];
  for (const name of spec.tasks) {
    // A path is relative to the recipe; anything else is a shipped task's name.
    const isPath = /[\\/]/.test(name) || /\.ya?ml$/i.test(name);
    const task = await loadTask(isPath && !isAbsolute(name) ? resolve(dirname(recipePath), name) : name);
    const entry = locked?.find((l) => l.task === task.spec.task);
    if (locked && !entry) throw new UsageError(`decontaminate.tasks: '${task.spec.task}' is not in the lock; rebuild without --locked to refresh it`);
    const data = await loadTaskData(client, task, entry);
    lock.push(data.lock);
    let rows = 0;
    const before = grams.size;
    for (const subset of data.subsets) {
      rows += subset.rows.length;
      for (const g of ngramSet(evaluationTexts(task, subset.rows, `${task.spec.dataset.repo}${subset.name ? ` subset ${subset.name}` : ""}`), n)) grams.add(g);
    }
    report.tasks.push({ task: task.spec.task, repo: data.lock.repo, commit: data.lock.commit, evaluation_rows: rows, ngrams: grams.size - before });
    sink({ type: "note", stage: "decontaminate", message: `${task.spec.task}: ${rows} evaluation rows of ${data.lock.repo}@${data.lock.commit.slice(0, 12)}, ${grams.size - before} new ${n}-grams` });
  }
  // Documents in rowid order, a chunk at a time; the contaminated ones are marked in one statement per chunk.
  const CHUNK = 4096;
  for (let after = -1; ; ) {
    const rows = await db.rows<{ id: bigint; text: string }>(`SELECT rowid AS id, text FROM ${DOCUMENTS} WHERE skip_reason IS NULL AND rowid > ${after} ORDER BY rowid LIMIT ${CHUNK}`);
    if (rows.length === 0) break;
    after = Number(rows[rows.length - 1]!.id);
    const hit = rows.filter((r) => overlaps(r.text, grams, n)).map((r) => String(r.id));
    if (hit.length) await db.run(`UPDATE ${DOCUMENTS} SET skip_reason = 'contaminated' WHERE rowid IN (${hit.join(",")})`);
    report.documents_removed += hit.length;
    sink({ type: "stage_progress", stage: "decontaminate", done: report.documents_removed, unit: "documents removed" });
  }
  return { report, lock };
}
