import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { loadPlan } from "../../src/train/plan.ts";
import { repoRoot } from "../helpers/paths.ts";

describe("training plans", () => {
  let dir: string;
  before(async () => (dir = await mkdtemp(join(tmpdir(), "chuxin-plan-unit-"))));
  after(async () => rm(dir, { recursive: true, force: true }));
  const load = async (name: string, text: string) => {
    await writeFile(join(dir, name), text);
    return loadPlan(join(dir, name));
  };

  it("the shipped plans load: ChuXin's eight stages and the tiny one's three", async () => {
    const chuxin = await loadPlan(join(repoRoot, "recipes", "chuxin-1.6b.plan.yaml"));
    assert.deepEqual(chuxin.stages.map((s) => s.name), ["pretrain", "cooldown", "extend-32k", "extend-64k", "extend-128k", "extend-256k", "extend-512k", "extend-1m"]);
    assert.equal(chuxin.stages[0]!.options.tokens, 2.3e12);
    assert.equal(chuxin.stages[7]!.options.context, 1_048_576);
    // The extension stages read the first long build and start each from the last.
    assert.equal(chuxin.stages[7]!.data, chuxin.stages[2]!.data);
    assert.deepEqual(chuxin.stages.map((s) => s.initFrom), ["none", ...Array(7).fill("previous")]);
    const tiny = await loadPlan(join(repoRoot, "recipes", "tiny.plan.yaml"));
    assert.deepEqual(tiny.stages.map((s) => s.recipe?.replace(/.*\//, "")), ["sample.yaml", "fixtures.yaml", "fixtures.yaml"]);
  });

  it("a stage inherits the defaults and the previous stage's data; its own keys win", async () => {
    const plan = await load("inherit.yaml", "defaults: { lr: 1.0e-3, seed: 5 }\nstages:\n  - { name: a, data: build-a, steps: 3 }\n  - { name: b, lr: 2.0e-4, tokens: 1.5K }\n");
    assert.deepEqual(plan.stages[0]!.options, { lr: 1e-3, seed: 5, steps: 3 });
    assert.deepEqual(plan.stages[1]!.options, { lr: 2e-4, seed: 5, tokens: 1500 });
    assert.equal(plan.stages[1]!.data, join(dir, "build-a"));
    assert.equal(plan.stages[1]!.initFrom, "previous");
    // A change to the defaults changes every stage's definition (a finished stage's is checked on resume).
    const other = await load("inherit2.yaml", "defaults: { lr: 1.0e-3, seed: 6 }\nstages:\n  - { name: a, data: build-a, steps: 3 }\n  - { name: b, lr: 2.0e-4, tokens: 1.5K }\n");
    assert.notEqual(other.stages[1]!.definitionSha256, plan.stages[1]!.definitionSha256);
  });

  it("refuses what cannot run, each with its file:line:col", async () => {
    const cases: [string, RegExp][] = [
      ["stages:\n  - { name: a, data: d }\n  - { name: a, data: d }\n", /:3:\d+: stages\[1\]\.name: 'a' is used twice/],
      ["stages:\n  - { name: a, data: d, init_from: previous }\n", /:2:\d+: stages\[0\]\.init_from: the first stage has no previous stage/],
      ["stages:\n  - { name: a, data: d, steps: 3, tokens: 2K }\n", /stages\[0\] sets both steps and tokens; give one/],
      ["stages:\n  - { name: a }\n", /:2:\d+: stages\[0\] \(a\): no data; give a build folder or a recipe/],
      ["stages:\n  - { name: 'a/b', data: d }\n", /:2:\d+: stages\[0\]\.name: a stage name is a folder name/],
      ["stages:\n  - { name: a, data: d, lr: fast }\n", /:2:\d+: stages\[0\]\.lr: expected number, got string "fast"/],
      ["stages: []\n", /stages/],
    ];
    for (const [i, [text, want]] of cases.entries()) await assert.rejects(load(`bad-${i}.yaml`, text), (e: Error) => (assert.match(e.message, want), true));
  });
});
