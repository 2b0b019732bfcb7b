/** The benchmark table `eval --tasks` prints: one line per task (and per subject), each metric with its standard error. */
import type { TaskResult } from "../eval/benchmarks.ts";

function cell(m: { value: number; stderr: number } | undefined): string {
  if (!m) return "";
  return `${m.value.toFixed(4)} ± ${Number.isFinite(m.stderr) ? m.stderr.toFixed(4) : "n/a"}`;
}

export function renderResultsTable(results: TaskResult[]): string {
  const metrics = [...new Set(results.flatMap((r) => Object.keys(r.metrics)))];
  const rows: string[][] = [["task", "shots", "rows", ...metrics]];
  for (const r of results) {
    const rowsScored = r.subsets.length ? r.subsets.reduce((a, s) => a + s.rows, 0) : (Object.values(r.metrics)[0]?.n ?? 0);
    const partial = r.limit !== null ? ` (--limit ${r.limit})` : "";
    rows.push([r.task + partial, String(r.num_fewshot), String(rowsScored), ...metrics.map((m) => cell(r.metrics[m]))]);
    for (const s of r.subsets) rows.push([`  ${s.name}`, "", String(s.rows), ...metrics.map((m) => cell(s.metrics[m]))]);
    if (r.missing_subsets.length) rows.push([`  (${r.missing_subsets.length} subset(s) not in ${r.dataset.repo}@${r.dataset.commit.slice(0, 12)})`, "", "", ...metrics.map(() => "")]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => [...(row[i] ?? "")].length)));
  return rows.map((row) => row.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ").trimEnd()).join("\n") + "\n";
}
