/**
 * Long sequences end to end on the CPU: a build whose sequences are 262,144 tokens (four of them from the fixture
 * mixture) builds, verifies and inspects; the tiny model trains on 16,384-token windows of it, with and without
 * recomputation, to the same losses.
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { readNpyInfo } from "../../src/shards/npy.ts";
import { runCli } from "../helpers/cli.ts";
import { HubServer } from "../helpers/hub-server.ts";
import { repoRoot, sharedHub } from "../helpers/paths.ts";

describe("sequences of 262,144 tokens", () => {
  let server: HubServer, work: string, env: Record<string, string>, data: string;
  before(async () => {
    server = await new HubServer({ root: sharedHub }).start();
    work = await mkdtemp(join(tmpdir(), "chuxin-long-"));
    env = { HF_ENDPOINT: server.url, HF_HOME: join(work, "hf") };
    const recipe = (await readFile(join(repoRoot, "recipes", "fixtures.yaml"), "utf8"))
      .replace(/^name: fixtures$/m, "name: fixtures-256k")
      .replace(/^sequence_length: 1024$/m, "sequence_length: 262144")
      .replace(/^target_tokens: 1000000$/m, "target_tokens: 1300000");
    await writeFile(join(work, "long.yaml"), recipe);
    data = join(work, "long");
  });
  after(async () => {
    await server?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it("build within --memory 1GB, verify and inspect", async () => {
    const b = await runCli(["build", join(work, "long.yaml"), "--out", data, "--memory", "1GB", "--workers", "2"], { env });
    assert.equal(b.code, 0, b.stderr);
    const manifest = JSON.parse(await readFile(join(data, "manifest.json"), "utf8"));
    assert.equal(manifest.sequence_length, 262144);
    assert.equal(manifest.total_sequences, 4);
    const info = await readNpyInfo(join(data, manifest.shards[0].path));
    assert.deepEqual([info.rows, info.cols], [4, 262144]);
    const v = await runCli(["verify", data], { env });
    assert.equal(v.code, 0, v.stderr);
    assert.match(v.stdout, /ok \(1 shard\(s\), 4 sequences, 1048576 tokens\)/);
    const i = await runCli(["inspect", data, "--sequence", "3", "--json"], { env });
    assert.equal(i.code, 0, i.stderr);
    const sequence = JSON.parse(i.stdout.trim().split("\n").pop()!);
    assert.ok(JSON.stringify(sequence).length > 100_000, "the sequence is decoded whole");
  });

  it("trains the tiny model on 16,384-token windows, with --recompute to the same losses and norms", async () => {
    const common = ["--data", data, "--context", "16384", "--rope-theta", "500000", "--micro-batch", "1", "--steps", "2", "--eval-every", "0", "--precision", "fp32", "--threads", "2"];
    const plain = await runCli(["train", ...common, "--out", join(work, "plain")], { env });
    assert.equal(plain.code, 0, plain.stderr);
    assert.match(plain.stderr, /max_position_embeddings 4096 → 16384/);
    const recomputed = await runCli(["train", ...common, "--recompute", "--out", join(work, "recomputed")], { env });
    assert.equal(recomputed.code, 0, recomputed.stderr);
    const steps = async (run: string) =>
      (await readFile(join(run, "metrics.jsonl"), "utf8"))
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { step: number; loss: number; grad_norm: number })
        .map(({ step, loss, grad_norm }) => ({ step, loss, grad_norm }));
    assert.deepEqual(await steps(join(work, "recomputed")), await steps(join(work, "plain")));
  });
});
