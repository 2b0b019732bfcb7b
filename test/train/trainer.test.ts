import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import { loadAddon, type AdamwOptions, type NativeModel } from "../../src/native/addon.ts";
import { resolveModelConfig } from "../../src/train/model-config.ts";
import { parseTrainConfig, type TrainConfig } from "../../src/train/options.ts";
import { train, type TrainEvent } from "../../src/train/trainer.ts";
import { useSampleBuild } from "../helpers/sample-build.ts";

/** The real model, with every AdamW step's hyperparameters and every forward/backward's reduce flag recorded. */
function recording(calls: { adamw: AdamwOptions[]; reduce: (boolean | undefined)[] }) {
  return (config: ConstructorParameters<ReturnType<typeof loadAddon>["Model"]>[0], backend: string, threads: number): NativeModel => {
    const model = new (loadAddon().Model)(config, backend, threads);
    return new Proxy(model, {
      get(target, key) {
        if (key === "clipAdamwStep") return (hp: AdamwOptions, maxNorm: number) => (calls.adamw.push(hp), target.clipAdamwStep(hp, maxNorm));
        if (key === "forwardBackward") return (...args: Parameters<NativeModel["forwardBackward"]>) => (calls.reduce.push(args[5]), target.forwardBackward(...args));
        const value = (target as unknown as Record<string | symbol, unknown>)[key];
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
  };
}

describe("the training loop, called without the CLI", () => {
  const fixture = useSampleBuild("chuxin-trainer-unit-");
  let config: (out: string, extra?: Partial<TrainConfig>) => Promise<TrainConfig>;
  before(() => {
    config = async (out, extra = {}) => {
      const parsed = parseTrainConfig({
        data: fixture.data,
        out,
        model: "tiny",
        model_config: (await resolveModelConfig("tiny")).config,
        device: "cpu",
        threads: 2,
        steps: 3,
        context: 64,
        micro_batch: 2,
        global_batch_tokens: 256,
        eval_every: 0,
        save_every: 0,
        warmup_steps: 1,
        ...extra,
      });
      assert.ok(parsed.ok, parsed.ok ? "" : parsed.problems.join("; "));
      return parsed.config;
    };
  });

  it("steps AdamW from 1; with --init-from --init-optimizer its bias corrections go on from the source's step", async () => {
    const events: TrainEvent[] = [];
    const first = { adamw: [] as AdamwOptions[], reduce: [] as (boolean | undefined)[] };
    const source = join(fixture.work, "source");
    await train(await config(source), { resume: false, onEvent: (e) => events.push(e), createModel: recording(first) });
    assert.deepEqual(first.adamw.map((hp) => hp.step), [1, 2, 3]);
    // Two micro-batches a step on one rank: neither reduces as the backward goes (that is the data-parallel path's).
    assert.deepEqual(first.reduce, [false, false, false, false, false, false]);

    const moments = { adamw: [] as AdamwOptions[], reduce: [] as (boolean | undefined)[] };
    await train(await config(join(fixture.work, "continued"), { init_from: source, init_optimizer: true, steps: 2 }), { resume: false, onEvent: () => {}, createModel: recording(moments) });
    assert.deepEqual(moments.adamw.map((hp) => hp.step), [4, 5]);
    const fresh = { adamw: [] as AdamwOptions[], reduce: [] as (boolean | undefined)[] };
    await train(await config(join(fixture.work, "fresh-moments"), { init_from: source, steps: 2 }), { resume: false, onEvent: () => {}, createModel: recording(fresh) });
    assert.deepEqual(fresh.adamw.map((hp) => hp.step), [1, 2]);
    const recorded = JSON.parse(await readFile(join(fixture.work, "continued", "run_config.json"), "utf8"));
    assert.equal(recorded.adam_step_offset, 3);
    assert.ok("optimizer.safetensors" in recorded.init_source.files, "the moments read are recorded");
    assert.ok(!("optimizer.safetensors" in JSON.parse(await readFile(join(fixture.work, "fresh-moments", "run_config.json"), "utf8")).init_source.files));
  });

  it("--tokens sets the steps from the batch and says so", async () => {
    const events: TrainEvent[] = [];
    await train(await config(join(fixture.work, "tokens"), { tokens: 700, steps: 100 }), { resume: false, onEvent: (e) => events.push(e) });
    const start = events.find((e) => e.type === "start") as Extract<TrainEvent, { type: "start" }>;
    assert.equal(start.steps, 3);
    assert.ok(events.some((e) => e.type === "note" && e.message === "--tokens 700: 3 steps of 256 tokens = 768 tokens (rounded to whole steps)"));
  });
});
