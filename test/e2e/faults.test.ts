/**
 * Fault injection, as CI runs it: kill -9 at seeded random points of build and train, stalled and hostile
 * Hub responses, damaged work files and concurrent builds. After each, the output is either absent or the
 * exact bytes a clean run writes. CHUXIN_FAULT_SEED picks other kill points (the seed is printed).
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, open, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { mulberry32 } from "../../src/train/data.ts";
import { runCli, type CliResult } from "../helpers/cli.ts";
import { HubServer } from "../helpers/hub-server.ts";
import { binPath, repoRoot, sharedHub } from "../helpers/paths.ts";

const seed = Number(process.env.CHUXIN_FAULT_SEED ?? 20261127);

async function outputFiles(dir: string): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  // Dot files are the work folder and a lock a kill may leave (taken over by the next run); not output.
  for (const name of (await readdir(dir)).sort()) if (!name.startsWith(".")) files.set(name, await readFile(join(dir, name)));
  return files;
}

function assertSameBytes(a: Map<string, Buffer>, b: Map<string, Buffer>, what: string): void {
  assert.deepEqual([...b.keys()], [...a.keys()], what);
  for (const [name, bytes] of a) assert.ok(bytes.equals(b.get(name)!), `${what}: ${name} differs`);
}

/** Starts the real bin; `kill` sends SIGKILL, `done` resolves with its exit. */
function start(args: string[], env: Record<string, string>) {
  const child = spawn(process.execPath, [binPath, ...args], { env: { ...process.env, CI: "true", ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d) => (stdout += d));
  child.stderr.on("data", (d) => (stderr += d));
  const done = new Promise<CliResult>((resolve) => child.on("close", (code) => resolve({ code, stdout, stderr })));
  return { child, done, stdout: () => stdout };
}

describe(`fault injection (seed ${seed})`, () => {
  const random = mulberry32(seed);
  const recipe = join(repoRoot, "recipes", "sample.yaml");
  let server: HubServer;
  let work: string;
  let env: Record<string, string>;
  let reference: Map<string, Buffer>;
  let referenceMs: number;

  before(async () => {
    server = await new HubServer({ root: sharedHub }).start();
    work = await mkdtemp(join(tmpdir(), "chuxin-faults-"));
    env = { HF_ENDPOINT: server.url, HF_HOME: join(work, "hf") };
    const started = Date.now();
    const r = await runCli(["build", recipe, "--out", join(work, "reference")], { env });
    referenceMs = Date.now() - started;
    assert.equal(r.code, 0, r.stderr);
    reference = await outputFiles(join(work, "reference"));
  });
  after(async () => {
    await server.stop();
    await rm(work, { recursive: true, force: true });
  });

  it("a build killed (-9) at seeded random points leaves nothing that looks complete, and reruns to the same bytes", async (t) => {
    for (let k = 0; k < 3; k++) {
      const out = join(work, `killed-${k}`);
      // Each run gets a fresh cache on odd kills, so downloads are among the stages hit.
      const runEnv = k % 2 ? { ...env, HF_HOME: join(work, `hf-kill-${k}`) } : env;
      const delay = Math.round(300 + random() * Math.max(500, 0.8 * referenceMs - 300));
      t.diagnostic(`build kill ${k}: after ${delay} ms (a clean build took ${referenceMs} ms)`);
      const run = start(["build", recipe, "--out", out], runEnv);
      const timer = setTimeout(() => run.child.kill("SIGKILL"), delay);
      await run.done;
      clearTimeout(timer);
      // The kill may land after the manifest was written (the build had finished): then it must be whole.
      if (existsSync(join(out, "manifest.json"))) assertSameBytes(reference, await outputFiles(out), `kill ${k}, manifest present`);
      const rerun = await runCli(["build", recipe, "--out", out], { env: runEnv });
      assert.equal(rerun.code, 0, rerun.stderr);
      assertSameBytes(reference, await outputFiles(out), `kill ${k}`);
    }
  });

  it("a training killed (-9) at seeded random steps resumes to the same losses as an uninterrupted run", async (t) => {
    const data = join(work, "reference");
    const args = ["--model", "tiny", "--context", "256", "--micro-batch", "2", "--threads", "2", "--steps", "12", "--save-every", "3", "--eval-every", "0"];
    const straight = join(work, "train-straight");
    const s = await runCli(["train", "--data", data, "--out", straight, ...args], { env });
    assert.equal(s.code, 0, s.stderr);
    const losses = async (run: string) =>
      (await readFile(join(run, "metrics.jsonl"), "utf8")).split("\n").filter(Boolean).map((l) => JSON.parse(l)).map((m) => [m.step, m.loss, m.grad_norm]);
    const expected = await losses(straight);
    const run = join(work, "train-killed");
    // A kill before the first checkpoint leaves nothing to resume: the next attempt starts afresh.
    const resume = async () => (existsSync(run) && (await readdir(run)).some((n) => /^checkpoint-\d+$/.test(n)) ? ["--resume"] : []);
    for (let k = 0; k < 2; k++) {
      const step = k === 0 ? 2 + Math.floor(random() * 5) : 7 + Math.floor(random() * 5); // one in each half of the run
      t.diagnostic(`train kill ${k}: at step ${step}`);
      const p = start(["train", "--data", data, "--out", run, ...args, "--json", ...(await resume())], env);
      p.child.stdout.on("data", () => {
        if (p.stdout().includes(`"type":"step","step":${step},`)) p.child.kill("SIGKILL");
      });
      await p.done;
    }
    const resumed = await runCli(["train", "--data", data, "--out", run, ...args, ...(await resume())], { env });
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.deepEqual(await losses(run), expected);
    assert.ok(!(await readdir(run)).some((n) => n.endsWith(".tmp") || n === ".chuxin.lock"));
  });

  it("two builds started together into one folder: one waits its turn with a clear message, the output is whole", async () => {
    const out = join(work, "concurrent");
    const [a, b] = await Promise.all([start(["build", recipe, "--out", out], env).done, start(["build", recipe, "--out", out], env).done]);
    for (const r of [a, b]) {
      if (r.code !== 0) {
        assert.equal(r.code, 1, r.stderr);
        assert.match(r.stderr, /is in use by 'chuxin-data build' \(pid \d+/);
      }
    }
    assert.ok(a.code === 0 || b.code === 0, `${a.stderr}\n${b.stderr}`);
    assertSameBytes(reference, await outputFiles(out), "concurrent");
  });

  it("a download that stalls once is timed out and retried; one that always stalls fails naming the timeout", async () => {
    const stallEnv = { ...env, HF_HOME: join(work, "hf-stall"), HF_HUB_DOWNLOAD_TIMEOUT: "1" };
    server.faults.push({ match: "train-00000-of-00001.parquet", kind: "stall_body", times: 1 });
    const out = join(work, "stalled");
    const r = await runCli(["build", recipe, "--out", out], { env: stallEnv });
    server.faults.length = 0;
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /retry 1: .*no data for 1 s after \d+ bytes/);
    assertSameBytes(reference, await outputFiles(out), "after a stall");

    server.faults.push({ match: "openai_humaneval/test-00000-of-00001.parquet", kind: "stall" });
    try {
      const started = Date.now();
      const f = await runCli(["build", recipe, "--out", join(work, "stalled-forever")], { env: { ...stallEnv, HF_HOME: join(work, "hf-stall-2") } });
      assert.equal(f.code, 1, f.stderr);
      assert.match(f.stderr, /no response within 1 s \(HF_HUB_DOWNLOAD_TIMEOUT\) \(5 attempts\); the connection stalled/);
      assert.ok(Date.now() - started < 60_000);
    } finally {
      server.faults.length = 0;
    }
  });

  it("a token chunk damaged in .work is tokenised again, not reused: the shards stay the same", async () => {
    const out = join(work, "reference");
    const tokens = join(out, ".work", "tokens");
    const chunk = (await readdir(tokens)).filter((n) => n.endsWith(".tok")).sort()[0]!;
    const handle = await open(join(tokens, chunk), "r+");
    const size = (await handle.stat()).size;
    await handle.write(Buffer.from([0xde, 0xad, 0xbe, 0xef]), 0, 4, size - 8);
    await handle.close();
    const r = await runCli(["build", recipe, "--out", out, "--json"], { env });
    assert.equal(r.code, 0, r.stderr);
    assertSameBytes(reference, await outputFiles(out), "after a damaged chunk");
    const v = await runCli(["verify", out], { env });
    assert.equal(v.code, 0, v.stderr);
  });
});
