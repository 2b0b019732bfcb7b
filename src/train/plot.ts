import { join } from "node:path";
import { writeFileAtomic } from "../util/atomic.ts";

/** A small SVG loss curve (train and eval) for the run folder. */
export function lossCurveSvg(train: { step: number; loss: number }[], evals: { step: number; loss: number }[], title: string): string {
  const W = 720, H = 400, left = 60, right = 20, top = 40, bottom = 50;
  const points = [...train, ...evals].filter((p) => Number.isFinite(p.loss));
  if (points.length === 0) return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}"><text x="20" y="40">no data</text></svg>\n`;
  const maxStep = Math.max(...points.map((p) => p.step), 1);
  const minStep = Math.min(...points.map((p) => p.step));
  const lo = Math.min(...points.map((p) => p.loss));
  const hi = Math.max(...points.map((p) => p.loss));
  const span = hi - lo || 1;
  const x = (s: number) => left + ((s - minStep) / Math.max(1, maxStep - minStep)) * (W - left - right);
  const y = (l: number) => top + (1 - (l - lo) / span) * (H - top - bottom);
  const path = (ps: { step: number; loss: number }[]) => ps.map((p, i) => `${i ? "L" : "M"}${x(p.step).toFixed(1)},${y(p.loss).toFixed(1)}`).join(" ");
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => lo + f * span);
  const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;");
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="${W / 2}" y="22" text-anchor="middle" font-size="14">${esc(title)}</text>
<line x1="${left}" y1="${H - bottom}" x2="${W - right}" y2="${H - bottom}" stroke="#444"/>
<line x1="${left}" y1="${top}" x2="${left}" y2="${H - bottom}" stroke="#444"/>
${ticks.map((t) => `<text x="${left - 6}" y="${y(t) + 4}" text-anchor="end">${t.toFixed(2)}</text>`).join("\n")}
<text x="${left}" y="${H - bottom + 18}">${minStep}</text>
<text x="${W - right}" y="${H - bottom + 18}" text-anchor="end">${maxStep}</text>
<text x="${W / 2}" y="${H - 10}" text-anchor="middle">step</text>
<path d="${path(train)}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>
${evals.length ? `<path d="${path(evals)}" fill="none" stroke="#d62728" stroke-width="2"/>` : ""}
${evals.map((p) => `<circle cx="${x(p.step).toFixed(1)}" cy="${y(p.loss).toFixed(1)}" r="3" fill="#d62728"/>`).join("\n")}
<text x="${W - right - 120}" y="${top + 10}" fill="#1f77b4">train loss</text>
<text x="${W - right - 120}" y="${top + 26}" fill="#d62728">eval loss</text>
</svg>
`;
}

export interface BenchmarkPoint {
  step: number;
  tokens: number;
  tasks: Record<string, Record<string, number>>;
}

/** One SVG per benchmark (`benchmark-<task>.svg`): each of its metrics against tokens seen, as the report's figures. */
export function benchmarkCurveSvg(task: string, points: BenchmarkPoint[], title: string): string {
  const W = 720, H = 400, left = 60, right = 20, top = 40, bottom = 50;
  const metrics = [...new Set(points.flatMap((p) => Object.keys(p.tasks[task] ?? {})))];
  const colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
  const series = metrics.map((m) => points.filter((p) => Number.isFinite(p.tasks[task]?.[m])).map((p) => ({ x: p.tokens, y: p.tasks[task]![m]! })));
  const all = series.flat();
  const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;");
  if (all.length === 0) return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}"><text x="20" y="40">no data</text></svg>\n`;
  const x0 = Math.min(...all.map((p) => p.x)), x1 = Math.max(...all.map((p) => p.x));
  const y0 = Math.min(0, ...all.map((p) => p.y)), y1 = Math.max(...all.map((p) => p.y), y0 + 1e-9);
  const x = (v: number) => left + ((v - x0) / Math.max(1, x1 - x0)) * (W - left - right);
  const y = (v: number) => top + (1 - (v - y0) / (y1 - y0)) * (H - top - bottom);
  const fmt = (n: number) => (n >= 1e9 ? `${(n / 1e9).toFixed(1)}B` : n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}K` : String(n));
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => y0 + f * (y1 - y0));
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="${W / 2}" y="22" text-anchor="middle" font-size="14">${esc(`${task}: ${title}`)}</text>
<line x1="${left}" y1="${H - bottom}" x2="${W - right}" y2="${H - bottom}" stroke="#444"/>
<line x1="${left}" y1="${top}" x2="${left}" y2="${H - bottom}" stroke="#444"/>
${ticks.map((t) => `<text x="${left - 6}" y="${y(t) + 4}" text-anchor="end">${t.toFixed(2)}</text>`).join("\n")}
<text x="${left}" y="${H - bottom + 18}">${fmt(x0)}</text>
<text x="${W - right}" y="${H - bottom + 18}" text-anchor="end">${fmt(x1)}</text>
<text x="${W / 2}" y="${H - 10}" text-anchor="middle">tokens seen</text>
${series.map((ps, i) => `<path d="${ps.map((p, k) => `${k ? "L" : "M"}${x(p.x).toFixed(1)},${y(p.y).toFixed(1)}`).join(" ")}" fill="none" stroke="${colors[i % colors.length]}" stroke-width="2"/>
${ps.map((p) => `<circle cx="${x(p.x).toFixed(1)}" cy="${y(p.y).toFixed(1)}" r="3" fill="${colors[i % colors.length]}"/>`).join("\n")}`).join("\n")}
${metrics.map((m, i) => `<text x="${W - right - 120}" y="${top + 10 + 16 * i}" fill="${colors[i % colors.length]}">${esc(m)}</text>`).join("\n")}
</svg>
`;
}

export async function writeBenchmarkCurves(runDir: string, points: BenchmarkPoint[], title: string): Promise<void> {
  const tasks = [...new Set(points.flatMap((p) => Object.keys(p.tasks)))];
  for (const task of tasks) await writeFileAtomic(join(runDir, `benchmark-${task}.svg`), benchmarkCurveSvg(task, points, title));
}
