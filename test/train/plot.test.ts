import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { benchmarkCurveSvg, lossCurveSvg, niceTicks } from "../../src/train/plot.ts";

/** The numbers of the y axis labels (text right-aligned at the left margin). */
const yLabels = (svg: string) => [...svg.matchAll(/<text x="58" y="[\d.]+" text-anchor="end">([^<]+)<\/text>/g)].map((m) => m[1]!);

describe("plots", () => {
  it("ticks are round: 1, 2 or 5 times a power of ten, covering the data", () => {
    assert.deepEqual(niceTicks(0.09, 0.26).ticks, [0.05, 0.1, 0.15, 0.2, 0.25, 0.3]);
    assert.deepEqual(niceTicks(5.31, 6.87).ticks, [5, 5.5, 6, 6.5, 7]);
    assert.deepEqual(niceTicks(0, 300, 6).ticks, [0, 50, 100, 150, 200, 250, 300]);
    assert.deepEqual(niceTicks(3, 3).ticks.length > 1, true, "a flat series still gets an axis");
  });

  it("the loss curve has round labels, a legend outside the data, and a marker at each held-out eval", () => {
    const train = Array.from({ length: 30 }, (_, i) => ({ step: i + 1, loss: 6.87 - i * 0.05 }));
    const evals = [10, 20, 30].map((step) => ({ step, loss: 6.87 - step * 0.05 + 0.02 }));
    const svg = lossCurveSvg(train, evals, "tiny");
    for (const label of yLabels(svg)) assert.match(label, /^\d+\.\d$/, `label ${label}`);
    // The legend starts right of the plot area's edge (x = 760 - 150).
    for (const m of svg.matchAll(/<text x="([\d.]+)" y="[\d.]+">(train loss|held-out eval)<\/text>/g)) assert.ok(Number(m[1]) > 610, `${m[2]} at x ${m[1]}`);
    assert.equal((svg.match(/stroke-dasharray="3,3"/g) ?? []).length, 3, "one marker per eval");
  });

  it("the learning rate of every step is drawn under the loss, on the same step axis", () => {
    const rates = Array.from({ length: 30 }, (_, i) => ({ step: i + 1, loss: 5, lr: i < 20 ? 1e-3 : 1e-3 * (1 - (i - 19) / 10) }));
    const svg = lossCurveSvg(rates, [], "wsd", rates);
    assert.match(svg, /height="530"/);
    assert.match(svg, />learning rate</);
    const path = [...svg.matchAll(/<path d="([^"]+)" fill="none" stroke="#2ca02c"/g)][0]![1]!;
    const points = path.split(" ").map((p) => p.slice(1).split(",").map(Number) as [number, number]);
    assert.equal(points.length, 30);
    // Flat for the stable phase, then falling to 0 at the panel's floor; x as the loss curve's.
    assert.equal(new Set(points.slice(0, 20).map((p) => p[1])).size, 1);
    assert.ok(points[29]![1] > points[20]![1]);
    const loss = [...svg.matchAll(/<path d="([^"]+)" fill="none" stroke="#1f77b4"/g)][0]![1]!.split(" ").map((p) => Number(p.slice(1).split(",")[0]));
    assert.deepEqual(points.map((p) => p[0]), loss);
    assert.doesNotMatch(lossCurveSvg(rates, [], "no rates"), /learning rate/);
  });

  it("benchmark curves draw ±1 standard error as a band", () => {
    const points = [1000, 2000, 3000].map((tokens, i) => ({ step: i + 1, tokens, tasks: { arc: { acc: 0.2 + 0.05 * i, acc_stderr: 0.03 } } }));
    const svg = benchmarkCurveSvg("arc", points, "tiny");
    assert.match(svg, /fill-opacity="0\.15"/);
    assert.match(svg, /band: ±1 standard error/);
    assert.doesNotMatch(svg, />acc_stderr</, "the standard error is no series of its own");
  });
});
