/** train and eval as users meet them: a run extended with --resume keeps its schedule; eval scores held-out data. */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import { learningRate } from "../../src/train/schedule.ts";
import { runCli } from "../helpers/cli.ts";
import { useSampleBuild } from "../helpers/sample-build.ts";

const common = ["--model", "tiny", "--context", "256", "--micro-batch", "2", "--threads", "2", "--lr", "3e-3", "--min-lr", "3e-4", "--warmup-steps", "1"];

const metrics = async (run: string) => (await readFile(join(run, "metrics.jsonl"), "utf8")).split("\n").filter(Boolean).map((l) => JSON.parse(l));

describe("train --resume and eval, as users meet them", () => {
  const fixture = useSampleBuild("chuxin-train-cli-");
  // Read once `before` has built the data.
  let work: string, env: Record<string, string>, data: string;
  before(() => ({ work, env, data } = fixture));

  it("extends a run with a larger --steps on its recorded schedule, saying what changed; --decay-steps stretches it", async () => {
    const schedule = { lr: 3e-3, minLr: 3e-4, warmupSteps: 1 };
    for (const [name, extra, decay] of [["kept", [], 4], ["stretched", ["--decay-steps", "8"], 8]] as const) {
      const run = join(work, `extend-${name}`);
      const a = await runCli(["train", "--data", data, "--out", run, "--steps", "4", "--save-every", "2", "--eval-every", "0", ...common], { env });
      assert.equal(a.code, 0, a.stderr);
      const b = await runCli(["train", "--data", data, "--out", run, "--steps", "8", "--eval-every", "0", "--resume", ...extra, ...common], { env });
      assert.equal(b.code, 0, b.stderr);
      assert.match(b.stderr, /resuming with changes: steps 4 → 8/);
      if (decay === 4) assert.match(b.stderr, /the cosine schedule keeps decaying over 4 steps \(pass --decay-steps to change it\)/);
      else assert.match(b.stderr, /decay_steps 4 → 8/);
      const lrs = (await metrics(run)).map((m) => m.lr);
      assert.deepEqual(lrs.slice(4), [5, 6, 7, 8].map((step) => learningRate(step, { ...schedule, decaySteps: decay })));
      assert.equal(JSON.parse(await readFile(join(run, "run_config.json"), "utf8")).decay_steps, decay);
    }
  });

  it("--schedule wsd: the learning rate of every step is the formula's, recorded with the run", async () => {
    const run = join(work, "wsd");
    const r = await runCli(["train", "--data", data, "--out", run, "--steps", "10", "--save-every", "0", "--eval-every", "0", "--schedule", "wsd", "--decay-fraction", "0.3", ...common], { env });
    assert.equal(r.code, 0, r.stderr);
    // Peak 3e-3 after 1 warmup step, stable to step 7, then 1-sqrt down to 3e-4 at step 10 (values written out).
    const want = [3e-3, 3e-3, 3e-3, 3e-3, 3e-3, 3e-3, 3e-3, 3e-4 + 2.7e-3 * (1 - Math.sqrt(1 / 3)), 3e-4 + 2.7e-3 * (1 - Math.sqrt(2 / 3)), 3e-4];
    const lrs = (await metrics(run)).filter((m) => m.lr !== undefined).map((m) => m.lr);
    assert.equal(lrs.length, 10);
    lrs.forEach((lr, i) => assert.ok(Math.abs(lr - want[i]!) < 1e-12, `step ${i + 1}: ${lr} vs ${want[i]}`));
    const recorded = JSON.parse(await readFile(join(run, "run_config.json"), "utf8"));
    assert.deepEqual([recorded.schedule, recorded.decay_fraction, recorded.decay_shape], ["wsd", 0.3, "1-sqrt"]);
  });

  it("eval scores the run's held-out windows by default (the run's own eval_loss), or whole sequences on request", async () => {
    const run = join(work, "evaluated");
    const t = await runCli(["train", "--data", data, "--out", run, "--steps", "4", "--eval-every", "4", "--eval-sequences", "4", ...common], { env });
    assert.equal(t.code, 0, t.stderr);
    const logged = (await metrics(run)).find((m) => m.eval_loss !== undefined)!;
    const tokConfig = JSON.parse(await readFile(join(run, "checkpoint-0000004", "tokenizer_config.json"), "utf8"));
    assert.equal(tokConfig.eos_token, "<｜end▁of▁sentence｜>");
    assert.equal(tokConfig.bos_token, "<｜begin▁of▁sentence｜>");
    assert.equal(tokConfig.clean_up_tokenization_spaces, false);
    assert.equal(tokConfig.add_bos_token, false, "the sample build adds no BOS");
    assert.equal(tokConfig.tokenizer_class, "PreTrainedTokenizerFast");
    const held = await runCli(["eval", "--checkpoint", run, "--json", "--threads", "2"], { env });
    assert.equal(held.code, 0, held.stderr);
    const h = JSON.parse(held.stdout);
    assert.equal(h.split, "held_out");
    assert.equal(h.windows, 4);
    assert.equal(h.data, data);
    assert.equal(h.mean_loss, logged.eval_loss, "the same windows, weights and loop as training's evaluation");
    // Whole sequences instead (--all is the same path from sequence 0 to the end; the full build would take minutes).
    const some = await runCli(["eval", "--checkpoint", run, "--sequences", "0..1", "--json", "--threads", "2"], { env });
    assert.equal(some.code, 0, some.stderr);
    const s = JSON.parse(some.stdout);
    assert.equal(s.split, "sequences");
    assert.deepEqual(s.sequences.map((q: { sequence: number }) => q.sequence), [0, 1]);
    const both = await runCli(["eval", "--checkpoint", run, "--all", "--sequences", "0"], { env });
    assert.equal(both.code, 2, both.stderr);
  });
});
