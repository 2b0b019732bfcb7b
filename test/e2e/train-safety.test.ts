/**
 * Training's guarantees: it reads only the bytes the build wrote, loads only checkpoints that are intact,
 * resumes from what a kill leaves, and shares its run folder with no other training.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { appendFile, cp, mkdir, open, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import { readSafetensors } from "../../src/train/safetensors.ts";
import { runCli } from "../helpers/cli.ts";
import { useSampleBuild } from "../helpers/sample-build.ts";
import { binPath, repoRoot } from "../helpers/paths.ts";

const common = ["--model", "tiny", "--context", "256", "--micro-batch", "2", "--threads", "2", "--eval-every", "0"];

/** Flips bytes in place, keeping the size (and so any size-based check) unchanged. */
async function flipBytes(path: string, at: number, count = 64): Promise<void> {
  const handle = await open(path, "r+");
  try {
    const buf = Buffer.alloc(count);
    await handle.read(buf, 0, count, at);
    for (let i = 0; i < count; i++) buf[i] = buf[i]! ^ 0x5a;
    await handle.write(buf, 0, count, at);
  } finally {
    await handle.close();
  }
}

describe("train safety: intact inputs, intact checkpoints, one trainer per run folder", () => {
  const fixture = useSampleBuild("chuxin-train-safety-");
  // Read once `before` has built the data.
  let work: string, env: Record<string, string>, data: string;
  before(() => ({ work, env, data } = fixture));

  it("refuses to train on a shard whose bytes differ from the manifest (same size), naming it", async () => {
    const shard = join(data, "shard-00000.npy");
    await flipBytes(shard, 4096);
    try {
      const r = await runCli(["train", "--data", data, "--out", join(work, "tampered"), "--steps", "1", ...common], { env });
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /does not match its manifest.*shard-00000\.npy: sha256 [0-9a-f]{64} differs from the manifest's/);
      assert.ok(!existsSync(join(work, "tampered", "checkpoint-0000001")));
    } finally {
      await flipBytes(shard, 4096);
    }
  });

  it("refuses damaged checkpoints on resume, eval and generate, naming the file", async () => {
    const run = join(work, "damaged");
    const r = await runCli(["train", "--data", data, "--out", run, "--steps", "2", "--save-every", "1", ...common], { env });
    assert.equal(r.code, 0, r.stderr);
    const state = JSON.parse(await readFile(join(run, "checkpoint-0000002", "chuxin_state.json"), "utf8"));
    assert.match(state.files["model.safetensors"], /^[0-9a-f]{64}$/);
    const weights = join(run, "checkpoint-0000002", "model.safetensors");
    await flipBytes(weights, 200_000, 256);
    const resume = await runCli(["train", "--data", data, "--out", run, "--steps", "3", "--resume", ...common], { env });
    assert.equal(resume.code, 1, resume.stderr);
    assert.match(resume.stderr, /checkpoint-0000002\/model\.safetensors: sha256 [0-9a-f]{64} differs from [0-9a-f]{64}, recorded when the checkpoint was saved; the checkpoint is damaged/);
    const e = await runCli(["eval", "--checkpoint", run, "--data", data, "--sequences", "0"], { env });
    assert.equal(e.code, 1, e.stderr);
    assert.match(e.stderr, /model\.safetensors: sha256 .* the checkpoint is damaged/);
    const g = await runCli(["generate", "--checkpoint", run, "--prompt", "x", "--max-tokens", "2"], { env });
    assert.equal(g.code, 1, g.stderr);
    assert.match(g.stderr, /model\.safetensors: sha256 .* the checkpoint is damaged/);

    // A checkpoint with no recorded hashes (written by another tool) is still checked for what it holds.
    await flipBytes(weights, 200_000, 256);
    delete state.files;
    await writeFile(join(run, "checkpoint-0000002", "chuxin_state.json"), JSON.stringify(state));
    const tensors = await readSafetensors(weights);
    const headerLength = Number((await readFile(weights)).readBigUInt64LE(0));
    const bytes = await readFile(weights);
    bytes.writeFloatLE(Number.NaN, 8 + headerLength); // the first value of the first tensor
    await writeFile(weights, bytes);
    const nan = await runCli(["train", "--data", data, "--out", run, "--steps", "3", "--resume", ...common], { env });
    assert.equal(nan.code, 1, nan.stderr);
    assert.match(nan.stderr, /model\.safetensors: .*\[0\] is NaN; the checkpoint holds non-finite values/);
    assert.ok(tensors.size > 0);

    await writeFile(weights, bytes.subarray(0, 1000));
    const cut = await runCli(["eval", "--checkpoint", run, "--data", data, "--sequences", "0"], { env });
    assert.equal(cut.code, 1, cut.stderr);
    assert.match(cut.stderr, /checkpoint-0000002\/model\.safetensors: truncated or not a safetensors file|checkpoint-0000002\/model\.safetensors: .* lies at bytes/);
  });

  it("resumes past a torn last metrics line and a half-written checkpoint, and refuses an edited trainer state", async () => {
    const run = join(work, "torn");
    const r = await runCli(["train", "--data", data, "--out", run, "--steps", "2", "--save-every", "1", ...common], { env });
    assert.equal(r.code, 0, r.stderr);
    await appendFile(join(run, "metrics.jsonl"), '{"step":3,"lo');
    await mkdir(join(run, "checkpoint-0000003.0badc0de.tmp"));
    await writeFile(join(run, "checkpoint-0000003.0badc0de.tmp", "model.safetensors"), "partial");
    const resumed = await runCli(["train", "--data", data, "--out", run, "--steps", "3", "--resume", ...common], { env });
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stderr, /removed checkpoint-0000003\.0badc0de\.tmp, a checkpoint a killed run left half-written/);
    assert.ok(!(await readdir(run)).some((n) => n.endsWith(".tmp")));
    const lines = (await readFile(join(run, "metrics.jsonl"), "utf8")).split("\n").filter(Boolean).map((l) => JSON.parse(l));
    assert.deepEqual(lines.map((l) => l.step), [1, 2, 3]);

    const statePath = join(run, "checkpoint-0000003", "chuxin_state.json");
    const state = JSON.parse(await readFile(statePath, "utf8"));
    await writeFile(statePath, JSON.stringify({ ...state, step: 1 }));
    const edited = await runCli(["train", "--data", data, "--out", run, "--steps", "4", "--resume", ...common], { env });
    assert.equal(edited.code, 1, edited.stderr);
    assert.match(edited.stderr, /chuxin_state\.json: step 1 does not match the folder's step 0000003/);
    // A checkpoint written before the state file was renamed (trainer_state.json) still resumes.
    await rm(statePath);
    await writeFile(join(run, "checkpoint-0000003", "trainer_state.json"), JSON.stringify(state));
    const legacy = await runCli(["train", "--data", data, "--out", run, "--steps", "4", "--resume", ...common], { env });
    assert.equal(legacy.code, 0, legacy.stderr);
    assert.ok(existsSync(join(run, "checkpoint-0000004", "chuxin_state.json")));
  });

  it("a build folder copied to a machine without the Hub cache decodes and trains from its own tokenizer.json, and training refuses a build without it", async () => {
    const copy = join(work, "copied-build");
    await cp(data, copy, { recursive: true, filter: (src) => !src.includes(`${data}/.work`) });
    const manifest = JSON.parse(await readFile(join(copy, "manifest.json"), "utf8"));
    assert.equal(manifest.tokenizer.in_build, "tokenizer.json");
    assert.equal(createHash("sha256").update(await readFile(join(copy, "tokenizer.json"))).digest("hex"), manifest.tokenizer.sha256);
    // Another machine: an empty HF cache and no Hub.
    const away = { HF_HOME: join(work, "hf-empty"), HF_HUB_OFFLINE: "1", HF_ENDPOINT: "http://127.0.0.1:9" };
    const inspect = await runCli(["inspect", copy, "--sequence", "0", "--json"], { env: away });
    assert.equal(inspect.code, 0, inspect.stderr);
    assert.ok(JSON.parse(inspect.stdout).sequences[0].documents[0].text.length > 0, "decoded");
    const run = join(work, "from-copy");
    const trained = await runCli(["train", "--data", copy, "--out", run, "--steps", "1", ...common], { env: away });
    assert.equal(trained.code, 0, trained.stderr);
    assert.ok(existsSync(join(run, "checkpoint-0000001", "tokenizer.json")), "the checkpoint carries the tokenizer");
    // Missing or changed: refused before the first step, naming the file.
    const original = await readFile(join(copy, "tokenizer.json"));
    await writeFile(join(copy, "tokenizer.json"), original.toString("utf8").replace('"type": "BPE"', '"type":"BPE"'));
    const changed = await runCli(["train", "--data", copy, "--out", join(work, "from-copy-changed"), "--steps", "1", ...common], { env: away });
    assert.equal(changed.code, 1, changed.stderr);
    assert.match(changed.stderr, /copied-build\/tokenizer\.json: sha256 [0-9a-f]{64} is not the build's tokenizer/);
    await rm(join(copy, "tokenizer.json"));
    const missing = await runCli(["train", "--data", copy, "--out", join(work, "from-copy-missing"), "--steps", "1", ...common], { env: away });
    assert.equal(missing.code, 1, missing.stderr);
    assert.match(missing.stderr, /the build's tokenizer cannot be found \(.*copied-build\/tokenizer\.json is missing.*\); checkpoints must carry it\. Copy the whole build folder, or rebuild it/);
    assert.ok(!existsSync(join(work, "from-copy-missing", "checkpoint-0000001")));
  });

  it("Ctrl-C stops train and build with exit 130, saying what was kept and how to go on", async () => {
    const run = join(work, "interrupted");
    const t = spawn(process.execPath, [binPath, "train", "--data", data, "--out", run, "--steps", "500", ...common, "--json"], {
      env: { ...process.env, CI: "true", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    t.stderr.on("data", (d) => (err += d));
    t.stdout.on("data", (d: Buffer) => {
      out += d;
      if (!t.killed && out.includes('"type":"step","step":2,')) t.kill("SIGINT"); // once: a second Ctrl-C aborts
    });
    const code = await new Promise<number | null>((resolve) => t.on("close", resolve));
    assert.equal(code, 130, err);
    // Said once, as what happened rather than an error: where it stopped, what was kept, the command to go on.
    assert.match(err, /chuxin-data: stopped at step \d+ of 500 \(Ctrl-C\); checkpoint saved: .*checkpoint-\d+; resume with: chuxin-data train --data .* --resume\n/);
    assert.doesNotMatch(err, /error:|done at step/);
    const last = out.trim().split("\n").map((l) => JSON.parse(l)).pop();
    assert.equal(last.type, "error");
    assert.equal(last.exit_code, 130);

    const b = spawn(process.execPath, [binPath, "build", join(repoRoot, "recipes", "sample.yaml"), "--out", join(work, "interrupted-build")], {
      env: { ...process.env, CI: "true", ...env, HF_HOME: join(work, "hf-interrupt") },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let berr = "";
    b.stderr.on("data", (d: Buffer) => {
      berr += d;
      if (!b.killed && berr.includes("✓ download")) b.kill("SIGINT");
    });
    const bcode = await new Promise<number | null>((resolve) => b.on("close", resolve));
    assert.equal(bcode, 130, berr);
    assert.match(berr, /interrupted: .*interrupted-build keeps its previous complete build, if it had one; rerun the same command to continue/);
    assert.ok(!existsSync(join(work, "interrupted-build", "manifest.json")));
    assert.ok(!existsSync(join(work, "interrupted-build", ".chuxin.lock")), "the lock is released on the way out");
  });

  it("says who holds a run folder another training is using", async () => {
    const run = join(work, "busy");
    await mkdir(run);
    await writeFile(join(run, ".chuxin.lock"), JSON.stringify({ pid: process.pid, host: hostname(), command: "chuxin-data train", started: "2026-01-01T00:00:00Z" }));
    const r = await runCli(["train", "--data", data, "--out", run, "--steps", "1", ...common], { env });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /busy is in use by 'chuxin-data train' \(pid \d+ on /);
    assert.ok(!existsSync(join(run, "metrics.jsonl")));
  });
});
