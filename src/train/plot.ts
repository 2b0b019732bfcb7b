import { join } from "node:path";
import { writeFileAtomic } from "../util/atomic.ts";

const W = 760, H = 400, LEFT = 64, RIGHT = 150, TOP = 40, BOTTOM = 50;
const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;");
const noData = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}"><text x="20" y="40">no data</text></svg>\n`;

/**
 * Round tick values over [lo, hi]: steps of 1, 2 or 5 times a power of ten, about `count` of them, and the range
 * widened to the ticks around it (0.09, 0.17, 0.26 become 0.05, 0.10, ..., 0.30).
 */
export function niceTicks(lo: number, hi: number, count = 5): { ticks: number[]; lo: number; hi: number; decimals: number } {
  if (!(hi > lo)) hi = lo + (lo === 0 ? 1 : Math.abs(lo) * 0.1);
  const raw = (hi - lo) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw)!;
  const first = Math.floor(lo / step + 1e-9) * step;
  const last = Math.ceil(hi / step - 1e-9) * step;
  const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  const ticks: number[] = [];
  for (let v = first; v <= last + step / 2; v += step) ticks.push(Number(v.toFixed(decimals)));
  return { ticks, lo: first, hi: last, decimals };
}

interface Frame {
  x: (v: number) => number;
  y: (v: number) => number;
  svg: string;
}

/** Axes with round ticks on both, a title and axis labels; the plot area ends RIGHT px before the edge, where legends go. */
function frame(title: string, xs: number[], ys: number[], xLabel: string, xFormat: (v: number) => string, height = H): Frame {
  const xt = niceTicks(Math.min(...xs), Math.max(...xs), 6);
  const yt = niceTicks(Math.min(...ys), Math.max(...ys), 5);
  const x = (v: number) => LEFT + ((v - xt.lo) / (xt.hi - xt.lo)) * (W - LEFT - RIGHT);
  const y = (v: number) => TOP + (1 - (v - yt.lo) / (yt.hi - yt.lo)) * (H - TOP - BOTTOM);
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="${(LEFT + W - RIGHT) / 2}" y="22" text-anchor="middle" font-size="14">${esc(title)}</text>
${yt.ticks.map((t) => `<line x1="${LEFT}" y1="${y(t).toFixed(1)}" x2="${W - RIGHT}" y2="${y(t).toFixed(1)}" stroke="#eee"/>\n<text x="${LEFT - 6}" y="${(y(t) + 4).toFixed(1)}" text-anchor="end">${t.toFixed(yt.decimals)}</text>`).join("\n")}
${xt.ticks.map((t) => `<line x1="${x(t).toFixed(1)}" y1="${H - BOTTOM}" x2="${x(t).toFixed(1)}" y2="${H - BOTTOM + 4}" stroke="#444"/>\n<text x="${x(t).toFixed(1)}" y="${H - BOTTOM + 18}" text-anchor="middle">${xFormat(t)}</text>`).join("\n")}
<line x1="${LEFT}" y1="${H - BOTTOM}" x2="${W - RIGHT}" y2="${H - BOTTOM}" stroke="#444"/>
<line x1="${LEFT}" y1="${TOP}" x2="${LEFT}" y2="${H - BOTTOM}" stroke="#444"/>
<text x="${(LEFT + W - RIGHT) / 2}" y="${H - 10}" text-anchor="middle">${esc(xLabel)}</text>`;
  return { x, y, svg };
}

/** The legend, outside the plot area on the right: one coloured line and label per series. */
function legend(entries: { label: string; color: string }[], top = TOP): string {
  const x0 = W - RIGHT + 14;
  return entries
    .map((e, i) => `<line x1="${x0}" y1="${top + 6 + 18 * i}" x2="${x0 + 18}" y2="${top + 6 + 18 * i}" stroke="${e.color}" stroke-width="2"/>\n<text x="${x0 + 24}" y="${top + 10 + 18 * i}">${esc(e.label)}</text>`)
    .join("\n");
}

const pathOf = (f: Frame, ps: { x: number; y: number }[]) => ps.map((p, i) => `${i ? "L" : "M"}${f.x(p.x).toFixed(1)},${f.y(p.y).toFixed(1)}`).join(" ");

/** Height of the learning-rate panel under the loss curve. */
const LR_PANEL = 130;

/** The learning rate of each step under the loss, on the loss curve's step axis, from 0 to its peak. */
function learningRatePanel(f: Frame, rates: { step: number; lr: number }[]): string {
  const top = H + 10, bottom = H + LR_PANEL - 30;
  const t = niceTicks(0, Math.max(...rates.map((r) => r.lr)), 2);
  const y = (v: number) => top + (1 - (v - t.lo) / (t.hi - t.lo)) * (bottom - top);
  const label = (v: number) => (v === 0 ? "0" : v.toExponential(1));
  return `${t.ticks.map((v) => `<line x1="${LEFT}" y1="${y(v).toFixed(1)}" x2="${W - RIGHT}" y2="${y(v).toFixed(1)}" stroke="#eee"/>\n<text x="${LEFT - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${label(v)}</text>`).join("\n")}
<line x1="${LEFT}" y1="${top}" x2="${LEFT}" y2="${bottom}" stroke="#444"/>
<line x1="${LEFT}" y1="${bottom}" x2="${W - RIGHT}" y2="${bottom}" stroke="#444"/>
<path d="${rates.map((r, i) => `${i ? "L" : "M"}${f.x(r.step).toFixed(1)},${y(r.lr).toFixed(1)}`).join(" ")}" fill="none" stroke="#2ca02c" stroke-width="1.5"/>
${legend([{ label: "learning rate", color: "#2ca02c" }], top)}`;
}

/**
 * A small SVG loss curve for the run folder: the training loss, each held-out eval marked where it ran, and (when
 * given) the learning rate of every step in a panel below, on the same step axis.
 */
export function lossCurveSvg(train: { step: number; loss: number }[], evals: { step: number; loss: number }[], title: string, rates: { step: number; lr: number }[] = []): string {
  const points = [...train, ...evals].filter((p) => Number.isFinite(p.loss));
  if (points.length === 0) return noData;
  const lr = rates.filter((r) => Number.isFinite(r.lr));
  const f = frame(title, points.map((p) => p.step), points.map((p) => p.loss), "step", (v) => v.toLocaleString("en-US"), lr.length ? H + LR_PANEL : H);
  const evalPoints = evals.filter((p) => Number.isFinite(p.loss)).map((p) => ({ x: p.step, y: p.loss }));
  return `${f.svg}
<path d="${pathOf(f, train.filter((p) => Number.isFinite(p.loss)).map((p) => ({ x: p.step, y: p.loss })))}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>
${evalPoints.map((p) => `<line x1="${f.x(p.x).toFixed(1)}" y1="${TOP}" x2="${f.x(p.x).toFixed(1)}" y2="${H - BOTTOM}" stroke="#d62728" stroke-opacity="0.25" stroke-dasharray="3,3"/>`).join("\n")}
${evalPoints.length ? `<path d="${pathOf(f, evalPoints)}" fill="none" stroke="#d62728" stroke-width="2"/>` : ""}
${evalPoints.map((p) => `<circle cx="${f.x(p.x).toFixed(1)}" cy="${f.y(p.y).toFixed(1)}" r="3.5" fill="#d62728"><title>eval at step ${p.x}: ${p.y.toFixed(4)}</title></circle>`).join("\n")}
${legend([{ label: "train loss", color: "#1f77b4" }, ...(evalPoints.length ? [{ label: "held-out eval", color: "#d62728" }] : [])])}
${lr.length ? learningRatePanel(f, lr) : ""}
</svg>
`;
}

export interface BenchmarkPoint {
  step: number;
  tokens: number;
  /** task → metric → value, with `<metric>_stderr` beside each metric that has one */
  tasks: Record<string, Record<string, number>>;
}

const STDERR = "_stderr";

/**
 * One SVG per benchmark (`benchmark-<task>.svg`): each of its metrics against tokens seen, as the report's figures,
 * with ±1 standard error as a band.
 */
export function benchmarkCurveSvg(task: string, points: BenchmarkPoint[], title: string): string {
  const metrics = [...new Set(points.flatMap((p) => Object.keys(p.tasks[task] ?? {})))].filter((m) => !m.endsWith(STDERR));
  const colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
  const series = metrics.map((m) =>
    points
      .filter((p) => Number.isFinite(p.tasks[task]?.[m]))
      .map((p) => {
        const se = p.tasks[task]![m + STDERR];
        return { x: p.tokens, y: p.tasks[task]![m]!, se: Number.isFinite(se) ? se! : 0 };
      }),
  );
  const all = series.flat();
  if (all.length === 0) return noData;
  const fmt = (n: number) => (n >= 1e9 ? `${+(n / 1e9).toFixed(2)}B` : n >= 1e6 ? `${+(n / 1e6).toFixed(2)}M` : n >= 1e3 ? `${+(n / 1e3).toFixed(2)}K` : String(n));
  const f = frame(`${task}: ${title}`, all.map((p) => p.x), [0, ...all.map((p) => p.y + p.se), ...all.map((p) => p.y - p.se)], "tokens seen", fmt);
  const band = (ps: typeof all, color: string) => {
    if (ps.length < 2 || ps.every((p) => p.se === 0)) return "";
    const upper = ps.map((p) => ({ x: p.x, y: p.y + p.se }));
    const lower = ps.map((p) => ({ x: p.x, y: p.y - p.se })).reverse();
    return `<path d="${pathOf(f, upper)} ${pathOf(f, lower).replace(/^M/, "L")} Z" fill="${color}" fill-opacity="0.15" stroke="none"/>`;
  };
  return `${f.svg}
${series
  .map(
    (ps, i) => `${band(ps, colors[i % colors.length]!)}
<path d="${pathOf(f, ps)}" fill="none" stroke="${colors[i % colors.length]}" stroke-width="2"/>
${ps.map((p) => `<circle cx="${f.x(p.x).toFixed(1)}" cy="${f.y(p.y).toFixed(1)}" r="3" fill="${colors[i % colors.length]}"/>`).join("\n")}`,
  )
  .join("\n")}
${legend(metrics.map((m, i) => ({ label: m, color: colors[i % colors.length]! })))}
<text x="${W - RIGHT + 14}" y="${TOP + 10 + 18 * metrics.length}" font-size="11" fill="#555">band: ±1 standard error</text>
</svg>
`;
}

export async function writeBenchmarkCurves(runDir: string, points: BenchmarkPoint[], title: string): Promise<void> {
  const tasks = [...new Set(points.flatMap((p) => Object.keys(p.tasks)))];
  for (const task of tasks) await writeFileAtomic(join(runDir, `benchmark-${task}.svg`), benchmarkCurveSvg(task, points, title));
}

/**
 * The training loss across a plan's stages, one colour a stage, on one axis of tokens seen since the plan began:
 * where each stage starts is marked, so a cool-down's drop and an extension's jump show where they happen.
 */
export function stagesCurveSvg(stages: { name: string; points: { tokens: number; loss: number }[] }[], title: string): string {
  const colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"];
  const all = stages.flatMap((s) => s.points).filter((p) => Number.isFinite(p.loss));
  if (all.length === 0) return noData;
  const fmt = (n: number) => (n >= 1e9 ? `${+(n / 1e9).toFixed(2)}B` : n >= 1e6 ? `${+(n / 1e6).toFixed(2)}M` : n >= 1e3 ? `${+(n / 1e3).toFixed(1)}K` : String(n));
  const f = frame(title, [0, ...all.map((p) => p.tokens)], all.map((p) => p.loss), "tokens seen (all stages)", fmt);
  const series = stages.map((s, i) => {
    const color = colors[i % colors.length]!;
    const ps = s.points.filter((p) => Number.isFinite(p.loss)).map((p) => ({ x: p.tokens, y: p.loss }));
    if (ps.length === 0) return "";
    const start = f.x(ps[0]!.x).toFixed(1);
    return `<line x1="${start}" y1="${TOP}" x2="${start}" y2="${H - BOTTOM}" stroke="${color}" stroke-opacity="0.4" stroke-dasharray="4,3"/>
<path d="${pathOf(f, ps)}" fill="none" stroke="${color}" stroke-width="1.5"/>`;
  });
  return `${f.svg}
${series.join("\n")}
${legend(stages.map((s, i) => ({ label: s.name, color: colors[i % colors.length]! })))}
</svg>
`;
}

/** Loss by position in the document (`eval --by-position`): one point a bucket, at its middle, with its token count. */
export function positionLossSvg(buckets: { from: number; to: number; tokens: number; loss: number }[], title: string): string {
  const points = buckets.filter((b) => Number.isFinite(b.loss)).map((b) => ({ x: (b.from + b.to + 1) / 2, y: b.loss, b }));
  if (points.length === 0) return noData;
  const fmt = (n: number) => (n >= 1024 && n % 1024 === 0 ? `${n / 1024}K` : n.toLocaleString("en-US"));
  const f = frame(title, [0, ...points.map((p) => p.b.to + 1)], points.map((p) => p.y), "position in the document (tokens)", fmt);
  return `${f.svg}
<path d="${pathOf(f, points)}" fill="none" stroke="#1f77b4" stroke-width="2"/>
${points.map((p) => `<circle cx="${f.x(p.x).toFixed(1)}" cy="${f.y(p.y).toFixed(1)}" r="3.5" fill="#1f77b4"><title>positions ${p.b.from}–${p.b.to}: loss ${p.y.toFixed(4)} over ${p.b.tokens} tokens</title></circle>`).join("\n")}
${legend([{ label: "mean loss", color: "#1f77b4" }])}
</svg>
`;
}

/**
 * Needle in a haystack as the papers draw it: context length across, needle depth down, each cell from red (the
 * number missed) to green (found); with several trials a cell is coloured by its share found.
 */
export function needleHeatmapSvg(cells: { length: number; depth: number; score: number }[], title: string): string {
  const lengths = [...new Set(cells.map((c) => c.length))].sort((a, b) => a - b);
  const depths = [...new Set(cells.map((c) => c.depth))].sort((a, b) => a - b);
  if (lengths.length === 0) return noData;
  const left = 70, top = 40, cellW = Math.max(18, Math.min(60, Math.floor((W - left - RIGHT) / lengths.length))), cellH = Math.max(14, Math.min(28, Math.floor(280 / depths.length)));
  const height = top + cellH * depths.length + 60;
  const colour = (score: number) => {
    // red (0) → yellow (0.5) → green (1)
    const r = score < 0.5 ? 215 : Math.round(215 - (score - 0.5) * 2 * 170);
    const g = score < 0.5 ? Math.round(48 + score * 2 * 150) : 198;
    return `rgb(${r},${g},60)`;
  };
  const label = (n: number) => (n >= 1024 && n % 1024 === 0 ? `${n / 1024}K` : String(n));
  const rects = cells.map((c) => {
    const x = left + lengths.indexOf(c.length) * cellW, y = top + depths.indexOf(c.depth) * cellH;
    return `<rect x="${x}" y="${y}" width="${cellW - 1}" height="${cellH - 1}" fill="${colour(c.score)}"><title>length ${c.length}, depth ${c.depth}: ${Math.round(c.score * 100)}%</title></rect>`;
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${Math.max(W, left + cellW * lengths.length + RIGHT)}" height="${height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="${left}" y="22" font-size="14">${esc(title)}</text>
${rects.join("\n")}
${depths.map((d, i) => `<text x="${left - 6}" y="${top + i * cellH + cellH / 2 + 4}" text-anchor="end">${Math.round(d * 100)}%</text>`).join("\n")}
${lengths.map((l, i) => `<text x="${left + i * cellW + cellW / 2}" y="${top + depths.length * cellH + 16}" text-anchor="middle">${label(l)}</text>`).join("\n")}
<text x="${left + (cellW * lengths.length) / 2}" y="${top + depths.length * cellH + 40}" text-anchor="middle">context length (tokens)</text>
<text x="16" y="${top + (cellH * depths.length) / 2}" transform="rotate(-90 16 ${top + (cellH * depths.length) / 2})" text-anchor="middle">needle depth</text>
${legend([{ label: "found", color: colour(1) }, { label: "missed", color: colour(0) }])}
</svg>
`;
}
