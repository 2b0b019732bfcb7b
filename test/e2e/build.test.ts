import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { runCli } from "../helpers/cli.ts";
import { HubServer } from "../helpers/hub-server.ts";
import { binPath, repoRoot, sharedHub } from "../helpers/paths.ts";

async function outputFiles(dir: string): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  for (const name of (await readdir(dir)).sort()) if (name !== ".work") files.set(name, await readFile(join(dir, name)));
  return files;
}

function assertSameBytes(a: Map<string, Buffer>, b: Map<string, Buffer>): void {
  assert.deepEqual([...a.keys()], [...b.keys()]);
  for (const [name, bytes] of a) assert.ok(bytes.equals(b.get(name)!), `${name} differs`);
}

describe("chuxin-data build, end to end through the loopback Hub", () => {
  let server: HubServer;
  let work: string;
  let env: Record<string, string>;
  let reference: Map<string, Buffer>;

  before(async () => {
    server = await new HubServer({ root: sharedHub }).start();
    work = await mkdtemp(join(tmpdir(), "chuxin-e2e-"));
    env = { HF_ENDPOINT: server.url, HF_HOME: join(work, "hf") };
  });
  after(async () => {
    await server.stop();
    await rm(work, { recursive: true, force: true });
  });

  it("builds the bundled sample recipe (the README quickstart), and verify and inspect read it", async () => {
    const out = join(work, "sample");
    const r = await runCli(["build", join(repoRoot, "recipes", "sample.yaml"), "--out", out], { env });
    assert.equal(r.code, 0, r.stderr);
    const m = JSON.parse(await readFile(join(out, "manifest.json"), "utf8"));
    assert.equal(m.tokenizer.eos_id, 100001);
    assert.equal(m.total_tokens, m.total_sequences * 4096);
    assert.equal(m.sources.reduce((a: number, s: any) => a + s.tokens_written, 0), m.total_tokens);
    for (const s of m.sources) assert.match(s.revision, /^[0-9a-f]{40}$/);
    const lock = JSON.parse(await readFile(join(out, "recipe.lock.json"), "utf8"));
    assert.equal(lock.sources[0].files[0].path, "main/train-00000-of-00001.parquet");
    assert.ok(existsSync(join(out, "MIXTURE.md")) && existsSync(join(out, "README.md")));
    // The summaries count alike: tokens with their EOS, as the table and the shards do; the documents selected
    // against those written differ by the dropped tail, and the pack line says so.
    const n = (text: string) => Number(text.replace(/,/g, ""));
    const tokenized = n(r.stderr.match(/tokenize: ([\d,]+) tokens \(EOS included\)/)![1]!);
    assert.equal(tokenized, m.total_tokens + m.tail_tokens_dropped, "every document is selected once in the sample: tokenised = written + the tail");
    const written = m.sources.reduce((a: number, s: any) => a + s.documents_written, 0);
    const pack = r.stderr.match(/pack: ([\d,]+) sequences \(([\d,]+) documents; the last ([\d,]+) tokens, short of a sequence, dropped\)/)!;
    assert.deepEqual([n(pack[1]!), n(pack[2]!), n(pack[3]!)], [m.total_sequences, written, m.tail_tokens_dropped]);
    assert.match(r.stdout, new RegExp(`wrote ${m.total_sequences.toLocaleString("en-US")} sequences \\(${m.total_tokens.toLocaleString("en-US")} tokens\\)`));

    // validate reads a Hub source's first file from the HF cache, as the lock names it, offline.
    const offline = { ...env, HF_HUB_OFFLINE: "1", HF_ENDPOINT: "http://127.0.0.1:9" };
    const checked = await runCli(["validate", join(repoRoot, "recipes", "sample.yaml"), "--lock", join(out, "recipe.lock.json")], { env: offline });
    assert.equal(checked.code, 0, checked.stderr);
    assert.match(checked.stdout, /checked: source 'gsm8k': 1 file\(s\) \(locked at [0-9a-f]{12}; the first read from the HF cache\); 'question', 'answer' in main\/train-00000-of-00001\.parquet/);
    const uncached = await runCli(["validate", join(repoRoot, "recipes", "sample.yaml"), "--lock", join(out, "recipe.lock.json")], { env: { ...offline, HF_HOME: join(work, "hf-empty") } });
    assert.equal(uncached.code, 0, uncached.stderr);
    assert.match(uncached.stdout, /not checked: source 'gsm8k': openai\/gsm8k@main: main\/train-00000-of-00001\.parquet \(commit [0-9a-f]{12}\) is not in the HF cache/);

    const v = await runCli(["verify", out], { env });
    assert.equal(v.code, 0, v.stderr);
    const i = await runCli(["inspect", out, "--sequence", "0", "--json"], { env });
    assert.equal(i.code, 0, i.stderr);
    const docs = JSON.parse(i.stdout).sequences[0].documents;
    assert.ok(docs.length >= 2);
    assert.ok(docs[0].text.endsWith("<｜end▁of▁sentence｜>"));
    assert.equal(docs.reduce((a: number, d: any) => a + d.tokens[1] - d.tokens[0], 0), 4096);
  });

  it("builds the fixture recipe byte-identically with 1 and 2 workers, with each share within one document of its target", async () => {
    const recipe = join(repoRoot, "recipes", "fixtures.yaml");
    const one = join(work, "fx-1");
    const two = join(work, "fx-2");
    const a = await runCli(["build", recipe, "--out", one, "--workers", "1", "--max-shard-bytes", "1000000"], { env });
    assert.equal(a.code, 0, a.stderr);
    const b = await runCli(["build", recipe, "--out", two, "--workers", "2", "--max-shard-bytes", "1000000"], { env });
    assert.equal(b.code, 0, b.stderr);
    reference = await outputFiles(one);
    assertSameBytes(reference, await outputFiles(two));
    const m = JSON.parse(reference.get("manifest.json")!.toString());
    assert.ok(m.shards.length > 1);
    const dups = Object.fromEntries(m.sources.map((s: any) => [s.name, s.duplicates_removed.total]));
    assert.deepEqual(dups, { "en-prose": 41, "zh-poetry": 95, code: 5, math: 224 });
    for (const s of m.sources) {
      // Tail tokens aside, the achieved count is within one (max-size) document of the target.
      assert.ok(Math.abs(s.tokens_written + s.tail_tokens_dropped - s.target_tokens) < 1200, `${s.name}`);
    }
  });

  it("finishes with the same bytes after being killed mid-tokenisation, reusing finished chunks (JS tokenizer: same ids as native)", async () => {
    const recipe = join(repoRoot, "recipes", "fixtures.yaml");
    const out = join(work, "fx-killed");
    // The JS tokenizer is slow enough to be killed mid-way; its shards must equal the native build's.
    const child = spawn(process.execPath, [binPath, "build", recipe, "--out", out, "--workers", "1", "--max-shard-bytes", "1000000", "--json", "--tokenizer-impl", "js"], {
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let seenChunks = 0;
    await new Promise<void>((resolve) => {
      child.stdout.on("data", (d: Buffer) => {
        for (const line of d.toString().split("\n")) {
          if (line.includes('"stage":"tokenize"') && line.includes("stage_progress") && ++seenChunks === 3) child.kill("SIGKILL");
        }
      });
      child.on("close", () => resolve());
    });
    assert.equal(seenChunks >= 3, true, "killed during tokenisation");
    assert.ok(!existsSync(join(out, "manifest.json")), "a killed build leaves no manifest");
    assert.ok(!(await readdir(out)).some((n) => n.endsWith(".npy")), "and no shard");
    await writeFile(join(out, "shard-00000.npy.0badc0de.tmp"), "left by a crash");
    const stale = join(out, ".work", "tokens", `${"0".repeat(64)}.tok`); // another corpus's chunk
    await writeFile(stale, "stale");
    const foreign = join(out, ".work", "tokens", "notes.txt"); // not a chunk: not ours to delete
    await writeFile(foreign, "kept");
    const rerun = await runCli(["build", recipe, "--out", out, "--workers", "2", "--max-shard-bytes", "1000000", "--json", "--tokenizer-impl", "js"], { env });
    assert.equal(rerun.code, 0, rerun.stderr);
    const tokenizeEnd = rerun.stdout.split("\n").filter(Boolean).map((l) => JSON.parse(l)).find((e) => e.type === "stage_end" && e.stage === "tokenize");
    assert.equal(tokenizeEnd.reused, true);
    const files = await outputFiles(out);
    assert.ok(!files.has("shard-00000.npy.0badc0de.tmp"), "a rerun clears temp files a crash left");
    // .work keeps the chunks this build read and its small tables; the text and chunks of other corpora are gone.
    assert.ok(!existsSync(stale), "a chunk no document of this build needs is removed");
    assert.ok(existsSync(foreign), "a file that is not a chunk stays");
    assert.deepEqual((await readdir(join(out, ".work"))).filter((n) => n !== "duckdb-tmp").sort(), ["build.duckdb", "tokens"]);
    const strip = (b: Buffer) => {
      const m = JSON.parse(b.toString());
      delete m.tokenizer.implementation;
      return m;
    };
    assert.deepEqual(strip(files.get("manifest.json")!), strip(reference.get("manifest.json")!));
    files.delete("manifest.json");
    const shardsOnly = new Map([...reference].filter(([n]) => files.has(n)));
    assertSameBytes(shardsOnly, files);
  });

  it("reads the first files while the last still download, with the same bytes", async () => {
    const recipe = join(repoRoot, "recipes", "fixtures.yaml");
    const out = join(work, "fx-overlap");
    // The last source's file (fixture/math) takes 6 s to answer; the rest come at once.
    const delayMs = 6000;
    const fault = { match: "/datasets/fixture/math/resolve/", kind: "slow" as const, delayMs, contentOnly: true };
    server.faults.push(fault);
    try {
      const r = await runCli(["build", recipe, "--out", out, "--max-shard-bytes", "1000000", "--json"], { env: { ...env, HF_HOME: join(work, "hf-overlap") } });
      assert.equal(r.code, 0, r.stderr);
      const events = r.stdout.split("\n").filter(Boolean).map((l) => JSON.parse(l));
      const at = (e: { time: string }) => Date.parse(e.time);
      const downloadEnd = events.find((e) => e.type === "stage_end" && e.stage === "download");
      const firstIngested = events.find((e) => e.type === "stage_progress" && e.stage === "ingest");
      const ingestEnd = events.find((e) => e.type === "stage_end" && e.stage === "ingest");
      // The slow file cannot have arrived before downloadEnd + delayMs: files read before then were read while it downloaded.
      assert.ok(at(firstIngested) < at(downloadEnd) + delayMs, `the first file was read ${at(firstIngested) - at(downloadEnd)} ms after the listing, before the slow one arrived`);
      // (On one machine in turn, the download stage would have taken the 6 s and ingest none of them.)
      assert.ok(at(ingestEnd) >= at(downloadEnd) + delayMs - 500, "and ingest overlapped the slow download");
    } finally {
      server.faults.splice(server.faults.indexOf(fault), 1);
    }
    assertSameBytes(reference, await outputFiles(out));
  });

  it("verify names a tampered shard and exits 1", async () => {
    const out = join(work, "fx-tampered");
    await cp(join(work, "fx-1"), out, { recursive: true });
    const shard = join(out, "shard-00001.npy");
    const bytes = await readFile(shard);
    bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 1;
    await writeFile(shard, bytes);
    const v = await runCli(["verify", out], { env });
    assert.equal(v.code, 1);
    assert.match(v.stderr, /shard-00001\.npy: sha256 [0-9a-f]{64} differs from the manifest's/);
  });

  it("rebuilds --locked to the same bytes, and fails loudly (keeping the last build) when the Hub no longer serves the locked commit", async () => {
    const hub = join(work, "hub-copy");
    await cp(join(sharedHub, "datasets", "fixture", "code"), join(hub, "datasets", "fixture", "code"), { recursive: true });
    await cp(join(sharedHub, "models"), join(hub, "models"), { recursive: true });
    const own = await new HubServer({ root: hub }).start();
    try {
      const recipe = join(work, "code.yaml");
      await writeFile(recipe, `name: code\nsequence_length: 256\nsources:\n  - name: code\n    weight: 1\n    hf: { repo: fixture/code, files: ["data/*.jsonl.gz"] }\n`);
      const ownEnv = { HF_ENDPOINT: own.url, HF_HOME: join(work, "hf-own") };
      const out = join(work, "code-out");
      assert.equal((await runCli(["build", recipe, "--out", out], { env: ownEnv })).code, 0);
      const first = await outputFiles(out);
      const again = await runCli(["build", recipe, "--out", out, "--locked"], { env: { ...ownEnv, HF_HOME: join(work, "hf-fresh") } });
      assert.equal(again.code, 0, again.stderr);
      assertSameBytes(first, await outputFiles(out));
      // The repo moves on: its old commit is gone from the server.
      await writeFile(join(hub, "datasets", "fixture", "code", "README.md"), "changed\n");
      const own2 = await new HubServer({ root: hub }).start();
      try {
        const locked = await runCli(["build", recipe, "--out", out, "--locked"], { env: { HF_ENDPOINT: own2.url, HF_HOME: join(work, "hf-fresh2") } });
        assert.equal(locked.code, 1);
        assert.match(locked.stderr, /fixture\/code: downloading data\/train\.jsonl\.gz: not found \(HTTP 404\)/);
        // The failed rebuild leaves the last complete build as it was.
        assertSameBytes(first, await outputFiles(out));
      } finally {
        await own2.stop();
      }
    } finally {
      await own.stop();
    }
  });
});
