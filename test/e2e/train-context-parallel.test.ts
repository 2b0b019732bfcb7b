/**
 * Context parallelism on the CPU over gloo, through the real bin: a ring of 2 ranks splitting every sequence, and
 * 2 rings of 2 (4 processes, data-parallel over the rings), follow one rank's trajectory with the document mask
 * on and off; a run resumes from 2 ranks in a ring to 1 rank; a rank killed mid-ring stops the other; a context
 * the ring cannot cut evenly is refused with the fix.
 *
 * Tolerance: the ring merges each query's softmax from blocks (log-sum-exp) and sums the keys' gradients in
 * another order than one rank does, so fp32 results agree to rounding: relative 1e-5 on losses and gradient
 * norms, and 1e-4 absolute on weights (of size ~0.02) after 4 steps at lr 3e-3, as for data parallelism (AdamW's
 * normalised step turns a rounding-level difference in a near-zero gradient into a fraction of lr).
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import { runCli } from "../helpers/cli.ts";
import { binPath } from "../helpers/paths.ts";
import { useSampleBuild } from "../helpers/sample-build.ts";
import { assertSameTrajectory, maxWeightDifference, metrics } from "../helpers/trajectory.ts";

const gloo = (await readFile(join(import.meta.dirname, "..", "..", "native", "build", "CMakeCache.txt"), "utf8").catch(() => "")).match(/^GLOO_LIBRARY:FILEPATH=(?!.*NOTFOUND).+$/m);

// 2 windows of 512 tokens per step: 2 micro-batches on 1 rank or 1 ring, 1 on each of 2 rings.
const common = ["--model", "tiny", "--context", "512", "--micro-batch", "1", "--global-batch-tokens", "1024", "--precision", "fp32", "--threads", "1"];
const schedule = ["--lr", "3e-3", "--warmup-steps", "1", "--eval-every", "2", "--eval-sequences", "2", "--save-every", "2", "--json"];

describe("context parallelism over gloo (CPU)", { skip: !gloo && !process.env.CI && "the addon was built without gloo (libgloo-dev)" }, () => {
  const fixture = useSampleBuild("chuxin-train-cp-");
  let work: string, env: Record<string, string>, data: string;
  const reference = (mask: string) => join(work, `single${mask}`);
  before(async () => {
    ({ work, env, data } = fixture);
    for (const mask of ["", "--no-doc-mask"]) {
      const r = await runCli(["train", "--data", data, "--out", reference(mask), "--steps", "4", ...common, ...schedule, ...(mask ? [mask] : [])], { env });
      assert.equal(r.code, 0, r.stderr);
    }
  });

  for (const [ranks, mask] of [[2, ""], [2, "--no-doc-mask"], [4, ""]] as const) {
    it(`${ranks} ranks in rings of 2${mask ? ` (${mask})` : ""} follow one rank's trajectory and hold its weights`, async () => {
      const run = join(work, `cp2-r${ranks}${mask}`);
      const r = await runCli(
        ["train", "--data", data, "--out", run, "--steps", "4", "--nproc-per-node", String(ranks), "--context-parallel", "2", ...common, ...schedule, ...(mask ? [mask] : [])],
        { env },
      );
      assert.equal(r.code, 0, r.stderr);
      assertSameTrajectory(await metrics(run), await metrics(reference(mask)), `${ranks} ranks, rings of 2`);
      const worst = await maxWeightDifference(join(run, "checkpoint-0000004"), join(reference(mask), "checkpoint-0000004"));
      assert.ok(worst < 1e-4, `weights differ from one rank's by up to ${worst}`);
      const memory = r.stdout.trim().split("\n").map((l) => JSON.parse(l)).find((e) => e.type === "memory");
      assert.equal(memory.context_parallel, 2);
      assert.equal(memory.activation_bytes_per_token, 12664, "per token of this rank's share: the tiny model's plan");
    });
  }

  it("resumes a run of a ring of 2 on one rank, on the same trajectory", async () => {
    const run = join(work, "cp2-then-1");
    // The first part on the 4-step schedule of the run it is compared with.
    const first = await runCli(["train", "--data", data, "--out", run, "--steps", "2", "--decay-steps", "4", "--nproc-per-node", "2", "--context-parallel", "2", ...common, ...schedule], { env });
    assert.equal(first.code, 0, first.stderr);
    const second = await runCli(["train", "--data", data, "--out", run, "--steps", "4", "--resume", ...common, ...schedule], { env });
    assert.equal(second.code, 0, second.stderr);
    assertSameTrajectory(await metrics(run), await metrics(reference("")), "ring of 2, then 1 rank");
    assert.ok((await maxWeightDifference(join(run, "checkpoint-0000004"), join(reference(""), "checkpoint-0000004"))) < 1e-4);
  });

  it("refuses a context the ring cannot cut into equal chunks, and a ring that does not divide the ranks", async () => {
    const odd = await runCli(["train", "--data", data, "--out", join(work, "odd"), "--steps", "1", "--context-parallel", "2", ...common, "--context", "510", "--global-batch-tokens", "1020"], { env });
    assert.equal(odd.code, 2, odd.stderr);
    assert.match(odd.stderr, /--context-parallel 2 cuts each sequence into 4 equal chunks, and the context 510 does not divide by 4: use a context of 508 or 512/);
    assert.ok(!existsSync(join(work, "odd")));
    const uneven = await runCli(["train", "--data", data, "--out", join(work, "uneven"), "--steps", "1", "--nproc-per-node", "3", "--context-parallel", "2", ...common], { env });
    assert.equal(uneven.code, 2, uneven.stderr);
    assert.match(uneven.stderr, /--context-parallel 2 does not divide the 3 ranks into rings: start a multiple of 2 ranks, or use a divisor of 3/);
  });

  it("stops the ring with a message when a member is killed", async () => {
    const run = join(work, "killed");
    const child = spawn(
      process.execPath,
      [binPath, "train", "--data", data, "--out", run, "--steps", "100000", "--save-every", "0", "--eval-every", "0", "--nproc-per-node", "2", "--context-parallel", "2", "--dist-timeout", "30", ...common],
      { env: { ...process.env, CI: "true", ...env }, stdio: ["ignore", "pipe", "pipe"] },
    );
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
    const started = Date.now();
    while (!existsSync(join(run, "metrics.jsonl")) || !(await readFile(join(run, "metrics.jsonl"), "utf8")).includes('"step":2,')) {
      assert.ok(Date.now() - started < 60_000, `training did not start: ${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    process.kill(Number(stderr.match(/process ids: 0=\d+ 1=(\d+)/)![1]), "SIGKILL");
    const killedAt = Date.now();
    assert.equal(await exited, 1, stderr);
    assert.ok((Date.now() - killedAt) / 1000 < 25, "the ring stopped within the launcher's grace period");
    assert.match(stderr, /rank 1 was killed by SIGKILL; stopping the other ranks/);
    assert.match(stderr, /rank 0\/2: error: .*Resume with --resume/);
  });
});
