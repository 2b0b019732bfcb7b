import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { flagOf, parseTokenCount, parseTrainConfig, RESUMABLE, trainConfigSchema, trainFlags } from "../../src/train/options.ts";
import { runCli } from "../helpers/cli.ts";

describe("training options, declared once", () => {
  it("give every described option a --flag with its schema's type and default, shown by train --help", async () => {
    const help = await runCli(["train", "--help"]);
    assert.equal(help.code, 0, help.stderr);
    for (const f of trainFlags()) {
      assert.match(help.stdout, new RegExp(`--${f.flag}\\b`), f.flag);
      if (f.default !== undefined && f.key !== "threads") assert.match(help.stdout, new RegExp(`--${f.flag}[^]*?\\[default: ${JSON.stringify(f.default).replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\]`), f.flag);
    }
    // model_config and device are resolved by the command, not flags of their own (device takes auto).
    assert.ok(!trainFlags().some((f) => f.key === "model_config"));
  });

  it("derive the resume rule: only cadence (evaluation, benchmarks, saving), length (steps or tokens), memory and the ranks' topology may change", () => {
    assert.deepEqual([...RESUMABLE].sort(), ["collectives", "context_parallel", "decay_steps", "dist_timeout", "eval_every", "eval_limit", "eval_tasks", "eval_tasks_every", "keep_last", "overlap", "recompute", "save_every", "steps", "threads", "tokens", "zero"]);
  });

  it("read token counts as people write them", () => {
    assert.equal(parseTokenCount("2T"), 2e12);
    assert.equal(parseTokenCount("1.5B"), 1_500_000_000);
    assert.equal(parseTokenCount("500m"), 500_000_000);
    assert.equal(parseTokenCount("4096"), 4096);
    assert.equal(parseTokenCount("2e6"), 2_000_000);
    assert.equal(parseTokenCount(4096), 4096);
    for (const bad of ["", "2X", "-5", "T", "1.2.3K"]) assert.equal(parseTokenCount(bad), undefined, bad);
  });

  it("name the flag of an invalid value, and fill defaults for options a run recorded before they existed", () => {
    const base = { data: "/d", model_config: { nLayers: 1, hidden: 8, nHeads: 2, ffn: 16, vocab: 32, maxSeq: 8, ropeTheta: 10000, normEps: 1e-5 }, device: "cpu" };
    const bad = parseTrainConfig({ ...base, micro_batch: 0, precision: "fp16" });
    assert.ok(!bad.ok);
    assert.match(bad.problems.join("\n"), /--micro-batch 0: Too small/);
    assert.match(bad.problems.join("\n"), /--precision "fp16": Invalid option/);
    const old = trainConfigSchema.parse(base);
    assert.equal(old.decay_embeddings, false);
    assert.equal(flagOf("eval_sequences"), "eval-sequences");
  });
});
