/**
 * `eval --tasks` as users meet it: every shipped task with a stand-in under ../shared/hub runs end to end against the
 * loopback Hub on a tiny trained model, and its metrics are recomputed here from the per-row samples; bad task files,
 * unknown names, missing columns and unserved datasets get clear errors; --locked replays the recorded dataset
 * files; a killed eval leaves no results.json.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { cp, mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import type { ResultsFile } from "../../src/eval/results.ts";
import { combine, mcRowMetrics, meanWithStderr } from "../../src/eval/metrics.ts";
import { binPath } from "../helpers/paths.ts";
import { runCli } from "../helpers/cli.ts";
import { useSampleBuild } from "../helpers/sample-build.ts";

const WITH_STANDINS = ["cmmlu", "ceval", "arc_easy", "arc_challenge", "piqa", "boolq", "openbookqa", "humaneval"];

async function samplesOf(dir: string, file: string): Promise<Record<string, any>[]> {
  return (await readFile(join(dir, file), "utf8")).split("\n").filter(Boolean).map((l) => JSON.parse(l));
}

describe("eval --tasks", () => {
  const fixture = useSampleBuild("chuxin-eval-tasks-");
  let run = "";
  const trained = async () => {
    if (run) return run;
    run = join(fixture.work, "run");
    const t = await runCli(["train", "--data", fixture.data, "--out", run, "--model", "tiny", "--context", "256", "--micro-batch", "2", "--threads", "2", "--steps", "4", "--save-every", "4", "--eval-every", "0"], { env: fixture.env });
    assert.equal(t.code, 0, t.stderr);
    return run;
  };

  it("runs every shipped task that has a stand-in, and its metrics follow from its samples", async () => {
    const ckpt = join(await trained(), "checkpoint-0000004");
    const r = await runCli(["eval", "--checkpoint", await trained(), "--tasks", WITH_STANDINS.join(","), "--limit", "3", "--threads", "2"], { env: fixture.env });
    assert.equal(r.code, 0, r.stderr);
    for (const t of WITH_STANDINS) assert.match(r.stdout, new RegExp(`^${t} \\(--limit 3\\)`, "m"));
    assert.match(r.stderr, /cmmlu: haonan-li\/cmmlu@[0-9a-f]{12} holds 4 of the task's 67 subsets/);
    const results = JSON.parse(await readFile(join(ckpt, "results.json"), "utf8")) as ResultsFile;
    assert.deepEqual(Object.keys(results.tasks).sort(), [...WITH_STANDINS].sort());
    for (const name of WITH_STANDINS) {
      const task = results.tasks[name]!;
      const samples = await samplesOf(ckpt, task.samples_file);
      assert.ok(samples.length > 0, name);
      assert.match(task.dataset.commit, /^[0-9a-f]{40}$/);
      const subsets = [...new Set(samples.map((s) => s.subset as string))];
      for (const metric of Object.keys(task.metrics)) {
        const parts = subsets.map((subset) =>
          meanWithStderr(
            samples
              .filter((s) => s.subset === subset)
              .map((s) => (metric === "pass@1" ? s["pass@1"] : mcRowMetrics(s.logprobs, s.choices, s.gold)[metric as "acc" | "acc_norm"])),
          ),
        );
        const want = combine(parts, task.aggregate as "weighted" | "mean");
        assert.ok(Math.abs(want.value - task.metrics[metric]!.value) < 1e-12, `${name} ${metric}: ${want.value} vs ${task.metrics[metric]!.value}`);
        assert.equal(want.n, task.metrics[metric]!.n);
      }
      if (task.output_type === "multiple_choice") {
        for (const s of samples) for (const lp of s.logprobs) assert.ok(Number.isFinite(lp) && lp < 0, `${name}: log-likelihood ${lp}`);
      }
    }
    assert.equal(results.tasks.cmmlu!.subsets.length, 4);
    assert.equal(results.tasks.cmmlu!.missing_subsets.length, 63);
    // HumanEval's samples hold the completion and how its tests ended.
    for (const s of await samplesOf(ckpt, results.tasks.humaneval!.samples_file)) assert.match(s.result, /^(passed|failed|timed out)/);
    // results.json says how the programs were confined, and their limit.
    const execution = (results.tasks.humaneval as unknown as { execution: { confinement: string; timeout_s: number } }).execution;
    assert.match(execution.confinement, /namespace/);
    assert.equal(execution.timeout_s, 3);
  });

  it("--locked reads the recorded commits and files, without listing the repos, and gives the same numbers", async () => {
    const dir = await trained();
    const out = join(fixture.work, "locked-out");
    const first = await runCli(["eval", "--checkpoint", dir, "--tasks", "arc_easy,ceval", "--limit", "2", "--output", out], { env: fixture.env });
    assert.equal(first.code, 0, first.stderr);
    const before = fixture.server.requests.length;
    const again = await runCli(["eval", "--checkpoint", dir, "--tasks", "arc_easy,ceval", "--limit", "2", "--output", out, "--locked", "--json"], { env: fixture.env });
    assert.equal(again.code, 0, again.stderr);
    assert.ok(!fixture.server.requests.slice(before).some((q) => /\/tree\/|\/revision\//.test(q.url)), "a locked eval lists nothing");
    const a = JSON.parse(first.stdout.length ? (await readFile(join(out, "results.json"), "utf8")) : "{}") as ResultsFile;
    const last = JSON.parse(again.stdout.trim().split("\n").pop()!);
    assert.equal(last.type, "result");
    for (const t of ["arc_easy", "ceval"]) assert.deepEqual(last.tasks[t].metrics, a.tasks[t]!.metrics);
    const lock = JSON.parse(await readFile(join(out, "eval.lock.json"), "utf8"));
    assert.deepEqual(lock.tasks.map((t: { task: string }) => t.task), ["arc_easy", "ceval"]);
    const missing = await runCli(["eval", "--checkpoint", dir, "--tasks", "boolq", "--output", out, "--locked"], { env: fixture.env });
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /the lock has no entry for task 'boolq'/);
  });

  it("refuses bad task files, unknown names, missing columns and datasets the Hub does not serve", async () => {
    const dir = await trained();
    const bad = join(fixture.work, "bad.yaml");
    await writeFile(bad, "task: mine\nfollows: me\ndataset: {repo: allenai/ai2_arc, config: ARC-Easy, split: test}\ndoc_to_text: '{{question'\ndoc_to_choice: '{{choices.text}}'\ndoc_to_target: 0\nmetrics: [acc]\n");
    const r1 = await runCli(["eval", "--checkpoint", dir, "--tasks", bad], { env: fixture.env });
    assert.equal(r1.code, 2);
    assert.match(r1.stderr, /bad\.yaml:4:\d+: doc_to_text: '\{\{' without '\}\}'/);
    const r2 = await runCli(["eval", "--checkpoint", dir, "--tasks", "arc_eazy"], { env: fixture.env });
    assert.equal(r2.code, 2);
    assert.match(r2.stderr, /unknown task 'arc_eazy' — did you mean 'arc_easy'/);
    const column = join(fixture.work, "column.yaml");
    await writeFile(column, "task: mine\nfollows: me\ndataset: {repo: allenai/ai2_arc, config: ARC-Easy, split: test}\ndoc_to_text: '{{question_stem}}'\ndoc_to_choice: '{{choices.text}}'\ndoc_to_target: 0\nmetrics: [acc]\n");
    const r3 = await runCli(["eval", "--checkpoint", dir, "--tasks", column, "--limit", "1"], { env: fixture.env });
    assert.equal(r3.code, 1);
    assert.match(r3.stderr, /doc_to_text reads column 'question_stem', which row 0 of allenai\/ai2_arc@[0-9a-f]{12} does not have \(columns: id, question, choices, answerKey\)/);
    const r4 = await runCli(["eval", "--checkpoint", dir, "--tasks", "hellaswag", "--limit", "1"], { env: fixture.env });
    assert.equal(r4.code, 1);
    assert.match(r4.stderr, /Rowan\/hellaswag.*not found \(HTTP 404\)/);
    assert.ok(!(await readdir(join(dir, "checkpoint-0000004"))).some((f) => f.includes("mine")));
  });

  it("train --eval-tasks logs each benchmark every K steps, draws it against tokens, and leaves the run's numbers as they were", async () => {
    const common = ["--data", fixture.data, "--model", "tiny", "--context", "256", "--micro-batch", "2", "--threads", "2", "--steps", "4", "--save-every", "4", "--eval-every", "0"];
    const plain = join(fixture.work, "plain-run");
    const scored = join(fixture.work, "scored-run");
    assert.equal((await runCli(["train", ...common, "--out", plain], { env: fixture.env })).code, 0);
    const r = await runCli(["train", ...common, "--out", scored, "--eval-tasks", "arc_easy,boolq", "--eval-tasks-every", "2", "--eval-limit", "4"], { env: fixture.env });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /benchmarks at step 2: arc_easy acc [\d.]+ ± [\d.]+ acc_norm [\d.]+ ± [\d.]+, boolq acc [\d.]+ ± [\d.]+/);
    const lines = (await readFile(join(scored, "metrics.jsonl"), "utf8")).split("\n").filter(Boolean).map((l) => JSON.parse(l));
    const bench = lines.filter((l) => l.benchmarks);
    assert.deepEqual(bench.map((l) => l.step), [2, 4]);
    assert.deepEqual(Object.keys(bench[0].benchmarks), ["arc_easy", "boolq"]);
    assert.ok(bench[1].tokens > bench[0].tokens);
    assert.ok(Number.isFinite(bench[0].benchmarks.arc_easy.acc_stderr), "each metric's standard error is logged beside it");
    assert.match(await readFile(join(scored, "benchmark-arc_easy.svg"), "utf8"), /tokens seen/);
    // Scoring between steps changes nothing the run computes: the same losses and the same final weights.
    const losses = async (run: string) => (await readFile(join(run, "metrics.jsonl"), "utf8")).split("\n").filter(Boolean).map((l) => JSON.parse(l)).filter((l) => l.loss !== undefined).map((l) => [l.step, l.loss, l.grad_norm]);
    assert.deepEqual(await losses(scored), await losses(plain));
    assert.deepEqual(await readFile(join(scored, "checkpoint-0000004", "model.safetensors")), await readFile(join(plain, "checkpoint-0000004", "model.safetensors")));
    const bad = await runCli(["train", ...common, "--out", join(fixture.work, "bad-run"), "--eval-tasks", "arc_eazy", "--eval-tasks-every", "2"], { env: fixture.env });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /unknown task 'arc_eazy'/);
  });

  it("a killed eval leaves no results.json", async () => {
    const dir = await trained();
    const copy = join(fixture.work, "killed");
    await mkdir(copy);
    await cp(join(dir, "checkpoint-0000004"), join(copy, "checkpoint-0000004"), { recursive: true });
    await cp(join(dir, "run_config.json"), join(copy, "run_config.json"));
    // The copy starts without the results an earlier case wrote beside the checkpoint.
    for (const f of ["results.json", "eval.lock.json", "eval"]) await rm(join(copy, "checkpoint-0000004", f), { recursive: true, force: true });
    const child = spawn(process.execPath, [binPath, "eval", "--checkpoint", copy, "--tasks", "arc_easy,humaneval", "--limit", "2", "--threads", "2"], { env: { ...process.env, ...fixture.env, CI: "true" }, stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    // Killed once arc_easy is done and humaneval is generating: nothing of the run may claim to be complete.
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        if (/eval arc_easy: \d+ requests/.test(stderr)) {
          clearInterval(timer);
          setTimeout(() => (child.kill("SIGKILL"), resolve()), 1500);
        }
      }, 100);
    });
    await new Promise((r) => child.on("close", r));
    const files = await readdir(join(copy, "checkpoint-0000004"));
    assert.ok(!files.includes("results.json"), files.join(", "));
  });
});
