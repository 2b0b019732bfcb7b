/**
 * `publish`: a build and a tiny model's run go to the loopback Hub's write API through the real bin, come back
 * byte for byte through the project's own Hub client, rebuild from the published recipe and lock, and a second
 * publish uploads nothing; failures (tokens, other content, a 5xx, a kill mid-upload) say what to do.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { copyFile, cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { HubClient } from "../../src/hub/client.ts";
import { checkpointBranch } from "../../src/publish/release.ts";
import { hubEnv } from "../../src/hub/env.ts";
import { sha256File } from "../../src/util/hash.ts";
import { runCli, type CliResult } from "../helpers/cli.ts";
import { HubServer } from "../helpers/hub-server.ts";
import { binPath, repoRoot, sharedHub } from "../helpers/paths.ts";

const TOKEN = "hf_loopbackwritetoken1234";

describe("publish", () => {
  let server: HubServer;
  let work: string;
  let env: Record<string, string>;
  let data: string;
  let run: string;
  const cli = (args: string[], extra: Record<string, string> = {}): Promise<CliResult> => runCli(args, { env: { ...env, ...extra } });
  const client = () => new HubClient(hubEnv({ HF_ENDPOINT: server.url, HF_HOME: join(work, "hf-readback"), HF_TOKEN: TOKEN }));
  /** Every file of a branch, downloaded through the project's Hub client: path → local copy. */
  async function downloaded(type: "dataset" | "model", id: string, branch: string): Promise<Map<string, string>> {
    const c = client();
    const commit = await c.resolveRevision({ type, id }, branch);
    const out = new Map<string, string>();
    for (const f of await c.listFiles({ type, id }, commit)) out.set(f.path, (await c.download({ type, id }, commit, f)).localPath);
    return out;
  }
  async function assertSameBytes(remote: Map<string, string>, local: Record<string, string>): Promise<void> {
    for (const [path, file] of Object.entries(local)) {
      assert.ok(remote.has(path), `${path} is on the Hub`);
      assert.equal(await sha256File(remote.get(path)!), await sha256File(file), `${path}: the same bytes`);
    }
  }

  before(async () => {
    server = await new HubServer({ root: sharedHub, writeTokens: [TOKEN] }).start();
    work = await mkdtemp(join(tmpdir(), "chuxin-publish-"));
    env = { HF_ENDPOINT: server.url, HF_HOME: join(work, "hf"), HF_TOKEN: TOKEN };
    data = join(work, "sample");
    const b = await cli(["build", join(repoRoot, "recipes", "sample.yaml"), "--out", data]);
    assert.equal(b.code, 0, b.stderr);
    run = join(work, "run");
    const t = await cli(["train", "--data", data, "--out", run, "--model", "tiny", "--context", "128", "--micro-batch", "1", "--steps", "4", "--save-every", "2", "--eval-every", "0", "--threads", "2"]);
    assert.equal(t.code, 0, t.stderr);
  });
  after(async () => {
    await server?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it("publishes a build with its shards, byte for byte, with a card the Hub reads; a rerun uploads nothing", async () => {
    const r = await cli(["publish", "data", data, "--repo", "chuxin/sample-data", "--with-shards", "--license", "apache-2.0", "--language", "en", "--recipe", join(repoRoot, "recipes", "sample.yaml")]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /committed \d+ file\(s\): http:\/\/127\.0\.0\.1:\d+\/datasets\/chuxin\/sample-data\/commit\/[0-9a-f]{40}/);
    const remote = await downloaded("dataset", "chuxin/sample-data", "main");
    const manifest = JSON.parse(await readFile(join(data, "manifest.json"), "utf8"));
    await assertSameBytes(remote, {
      "sample.yaml": join(repoRoot, "recipes", "sample.yaml"),
      "recipe.lock.json": join(data, "recipe.lock.json"),
      "manifest.json": join(data, "manifest.json"),
      "MIXTURE.md": join(data, "MIXTURE.md"),
      "tokenizer.json": join(data, "tokenizer.json"),
      ...Object.fromEntries(manifest.shards.flatMap((s: { path: string; doc_index: string }) => [[s.path, join(data, s.path)], [s.doc_index, join(data, s.doc_index)]])),
    });
    const card = await readFile(remote.get("README.md")!, "utf8");
    assert.match(card, /^---\npretty_name: "sample"\nlicense: apache-2\.0\nlanguage:\n- en\nsize_categories:\n- n<1K\nsource_datasets:\n- openai\/gsm8k\n/);
    assert.match(card, /\| \*\*total\*\* \|/);
    assert.ok(!card.includes(TOKEN) && !r.stderr.includes(TOKEN) && !r.stdout.includes(TOKEN), "the token is never shown");

    const writes = () => server.requests.filter((q) => q.method === "PUT" || /\/commit\//.test(q.url)).length;
    const before = writes();
    const again = await cli(["publish", "data", data, "--repo", "chuxin/sample-data", "--with-shards", "--license", "apache-2.0", "--language", "en", "--recipe", join(repoRoot, "recipes", "sample.yaml")]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /the Hub already holds this release .*nothing uploaded/);
    assert.equal(writes(), before, "no upload and no commit the second time");
  });

  it("rebuilds the same shards from the published recipe and lock (build --locked)", async () => {
    const remote = await downloaded("dataset", "chuxin/sample-data", "main");
    const dir = join(work, "from-hub");
    await rm(dir, { recursive: true, force: true });
    const { mkdir } = await import("node:fs/promises");
    await mkdir(dir, { recursive: true });
    await copyFile(remote.get("sample.yaml")!, join(dir, "sample.yaml"));
    await copyFile(remote.get("recipe.lock.json")!, join(dir, "recipe.lock.json"));
    const r = await cli(["build", join(dir, "sample.yaml"), "--out", join(dir, "out"), "--locked", "--lock", join(dir, "recipe.lock.json")]);
    assert.equal(r.code, 0, r.stderr);
    const manifest = JSON.parse(await readFile(join(data, "manifest.json"), "utf8"));
    for (const s of manifest.shards) assert.equal(await sha256File(join(dir, "out", s.path)), await sha256File(remote.get(s.path)!), `${s.path}: the same bytes as published`);
  });

  it("publishes a run: the final model on main, every checkpoint as its own branch, the log and a card", async () => {
    // Benchmarks measured on the final checkpoint go on the card, with their results and samples.
    const e = await cli(["eval", "--checkpoint", run, "--tasks", "arc_easy", "--limit", "2", "--threads", "2"]);
    assert.equal(e.code, 0, e.stderr);
    const r = await cli(["publish", "model", run, "--repo", "chuxin/tiny", "--data-repo", "chuxin/sample-data", "--license", "apache-2.0"]);
    assert.equal(r.code, 0, r.stderr);
    const main = await downloaded("model", "chuxin/tiny", "main");
    await assertSameBytes(main, {
      "model.safetensors": join(run, "checkpoint-0000004", "model.safetensors"),
      "config.json": join(run, "checkpoint-0000004", "config.json"),
      "generation_config.json": join(run, "checkpoint-0000004", "generation_config.json"),
      "tokenizer.json": join(run, "checkpoint-0000004", "tokenizer.json"),
      "metrics.jsonl": join(run, "metrics.jsonl"),
      "loss.svg": join(run, "loss.svg"),
      "results.json": join(run, "checkpoint-0000004", "results.json"),
      "eval/arc_easy.samples.jsonl": join(run, "checkpoint-0000004", "eval", "arc_easy.samples.jsonl"),
    });
    const card = await readFile(main.get("README.md")!, "utf8");
    assert.match(card, /\| arc_easy \(first 2 rows\) \| 0 \| 2 \| [\d.]+ ± [\d.]+ \| [\d.]+ ± [\d.]+ \| allenai\/ai2_arc@[0-9a-f]{12} \|/);
    assert.match(card, /datasets:\n- chuxin\/sample-data/);
    const runConfig = JSON.parse(await readFile(main.get("run_config.json")!, "utf8"));
    assert.equal(runConfig.data, "chuxin/sample-data", "no local paths in the published options");
    for (const [step, folder] of [[2, "checkpoint-0000002"], [4, "checkpoint-0000004"]] as const) {
      const state = JSON.parse(await readFile(join(run, folder, "chuxin_state.json"), "utf8"));
      const branch = checkpointBranch(step, state.tokens_seen);
      assert.match(branch, new RegExp(`^step-000000${step}-tokens-\\d+[KMBT]?$`));
      assert.ok(card.includes(`\`${branch}\``), `the card lists ${branch}`);
      await assertSameBytes(await downloaded("model", "chuxin/tiny", branch), { "model.safetensors": join(run, folder, "model.safetensors") });
    }
    const again = await cli(["publish", "model", run, "--repo", "chuxin/tiny", "--data-repo", "chuxin/sample-data", "--license", "apache-2.0"]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /done: 0 commit\(s\) \(nothing new\)/);
  });

  it("refuses a repo or branch that holds other content, unless --revision or --force", async () => {
    const other = join(work, "fixtures");
    const b = await cli(["build", join(repoRoot, "recipes", "fixtures.yaml"), "--out", other]);
    assert.equal(b.code, 0, b.stderr);
    const args = ["publish", "data", other, "--repo", "chuxin/sample-data", "--recipe", join(repoRoot, "recipes", "fixtures.yaml")];
    const refused = await cli(args);
    assert.equal(refused.code, 2, refused.stderr);
    assert.match(refused.stderr, /chuxin\/sample-data@main holds other content \(.*manifest\.json differs.*\); publish to another --revision, or pass --force/);
    const branch = await cli([...args, "--revision", "fixtures"]);
    assert.equal(branch.code, 0, branch.stderr);
    assert.equal(await sha256File((await downloaded("dataset", "chuxin/sample-data", "fixtures")).get("manifest.json")!), await sha256File(join(other, "manifest.json")));
    const forced = await cli([...args, "--force"]);
    assert.equal(forced.code, 0, forced.stderr);
    const main = await downloaded("dataset", "chuxin/sample-data", "main");
    assert.ok(!main.has("shard-00000.npy"), "--force removed what is not part of the release");
    assert.equal(await sha256File(main.get("manifest.json")!), await sha256File(join(other, "manifest.json")));
  });

  it("refuses a checkpoint branch another run already holds", async () => {
    const other = join(work, "run-seed-1");
    const t = await cli(["train", "--data", data, "--out", other, "--seed", "1", "--model", "tiny", "--context", "128", "--micro-batch", "1", "--steps", "2", "--save-every", "2", "--eval-every", "0", "--threads", "2"]);
    assert.equal(t.code, 0, t.stderr);
    const r = await cli(["publish", "model", other, "--repo", "chuxin/tiny"]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /chuxin\/tiny@step-0000002-tokens-\d+ holds other content \(model\.safetensors differs/);
  });

  it("says what is wrong with a missing or refused token, and needs none for --dry-run", async () => {
    const missing = await cli(["publish", "data", data, "--repo", "chuxin/x", "--recipe", join(repoRoot, "recipes", "sample.yaml")], { HF_TOKEN: "" });
    assert.equal(missing.code, 2, missing.stderr);
    assert.match(missing.stderr, /publishing needs HF_TOKEN/);
    const wrong = await cli(["publish", "data", data, "--repo", "chuxin/x", "--recipe", join(repoRoot, "recipes", "sample.yaml")], { HF_TOKEN: "hf_notavalidtoken999" });
    assert.equal(wrong.code, 1, wrong.stderr);
    assert.match(wrong.stderr, /refused HF_TOKEN \(HTTP 401\); use a token with write access/);
    assert.ok(!wrong.stderr.includes("hf_notavalidtoken999"));
    const dry = await cli(["publish", "data", data, "--repo", "chuxin/dry", "--with-shards", "--dry-run", "--recipe", join(repoRoot, "recipes", "sample.yaml")], { HF_TOKEN: "" });
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stderr, /main: 8 of 8 file\(s\) to upload \(\d+ (B|KiB|MiB) of \d+ (B|KiB|MiB)\).*shard-00000\.npy/);
    assert.match(dry.stderr, /dry run: nothing was uploaded/);
    assert.match(dry.stderr, /warning: the card names no license \(--license/);
    // A run that stopped before its planned steps: said, with both numbers.
    const stopped = join(work, "stopped-run");
    await cp(run, stopped, { recursive: true });
    const config = JSON.parse(await readFile(join(stopped, "run_config.json"), "utf8"));
    await writeFile(join(stopped, "run_config.json"), JSON.stringify({ ...config, steps: 10 }, null, 2));
    const early = await cli(["publish", "model", stopped, "--repo", "chuxin/dry-model", "--dry-run"], { HF_TOKEN: "" });
    assert.equal(early.code, 0, early.stderr);
    assert.match(early.stderr, /warning: the run stopped at step 4 of the 10 planned: main gets that checkpoint, not a finished run's/);
    assert.doesNotMatch(early.stderr, /0\.0 of 0\.0 MB/);
  });

  it("resumes a publish that a 5xx or a kill stopped mid-upload; the card comes last", async () => {
    const args = ["publish", "data", data, "--repo", "chuxin/resumed", "--with-shards", "--recipe", join(repoRoot, "recipes", "sample.yaml")];
    server.faults.push({ match: "/__lfs/", kind: "500", method: "PUT" });
    const failed = await cli(args);
    server.faults.length = 0;
    assert.equal(failed.code, 1, failed.stderr);
    assert.match(failed.stderr, /the Hub failed with HTTP 500 \(4 attempts\); rerun the same command to resume/);
    const partial = await downloaded("dataset", "chuxin/resumed", "main");
    assert.ok(!partial.has("README.md") && !partial.has("manifest.json"), "nothing claims to be complete");

    // An upload that never gets an answer times out (HF_HUB_DOWNLOAD_TIMEOUT plus 1 s per MB) instead of hanging.
    server.faults.push({ match: "/__lfs/", kind: "stall", method: "PUT" });
    const stalled = await cli(args, { HF_HUB_DOWNLOAD_TIMEOUT: "1" });
    server.faults.length = 0;
    assert.equal(stalled.code, 1, stalled.stderr);
    assert.match(stalled.stderr, /the connection stalled .*\(4 attempts\); check the network, then rerun to resume/);

    // A kill -9 while the shard's bytes are being sent (the upload is held), then the same command again.
    const stall = { match: "/__lfs/", kind: "stall" as const, method: "PUT", times: 1 };
    server.faults.push(stall);
    const puts = () => server.requests.filter((q) => q.method === "PUT" && q.url.startsWith("/__lfs/")).length;
    const before = puts();
    const child = spawn(process.execPath, [binPath, ...args], { env: { ...process.env, CI: "true", ...env }, stdio: "ignore" });
    const exited = new Promise((r) => child.on("close", r));
    const started = Date.now();
    while (puts() === before) {
      assert.ok(Date.now() - started < 30_000, "the upload started");
      await new Promise((r) => setTimeout(r, 50));
    }
    child.kill("SIGKILL");
    await exited;
    assert.equal(stall.times, 0, "the kill came while an upload was held");
    server.faults.length = 0;
    const resumed = await cli(args);
    assert.equal(resumed.code, 0, resumed.stderr);
    const remote = await downloaded("dataset", "chuxin/resumed", "main");
    const manifest = JSON.parse(await readFile(join(data, "manifest.json"), "utf8"));
    await assertSameBytes(remote, { "manifest.json": join(data, "manifest.json"), [manifest.shards[0].path]: join(data, manifest.shards[0].path) });
    assert.ok(remote.has("README.md"));
  });
});
