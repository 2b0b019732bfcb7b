/**
 * The build's guarantees under hostile input and failure: nothing written outside its folders, the last
 * good output kept when a rebuild fails, one build per folder, and no output that is silently wrong.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { runCli } from "../helpers/cli.ts";
import { HubServer } from "../helpers/hub-server.ts";
import { repoRoot, sharedHub, sharedTokenizer } from "../helpers/paths.ts";

function localRecipe(name: string, sources: string, extra = ""): string {
  return `name: ${name}\nseed: 5\nsequence_length: 64\ntokenizer:\n  path: ${sharedTokenizer}\n${extra}sources:\n${sources}`;
}

async function snapshot(dir: string): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  for (const name of (await readdir(dir)).sort()) if (name !== ".work") files.set(name, await readFile(join(dir, name)));
  return files;
}

describe("build safety: files stay in their folders, failures keep the last good output", () => {
  let server: HubServer;
  let work: string;
  let env: Record<string, string>;
  let sample: string;

  before(async () => {
    server = await new HubServer({ root: sharedHub }).start();
    work = await mkdtemp(join(tmpdir(), "chuxin-safety-"));
    env = { HF_ENDPOINT: server.url, HF_HOME: join(work, "hf") };
    sample = join(work, "sample");
    const r = await runCli(["build", join(repoRoot, "recipes", "sample.yaml"), "--out", sample], { env });
    assert.equal(r.code, 0, r.stderr);
    await mkdir(join(work, "data"));
    const docs = Array.from({ length: 40 }, (_, i) => JSON.stringify({ text: `Short document ${i} about subject ${i % 5}, with a few words.` }));
    await writeFile(join(work, "data", "short.jsonl"), docs.join("\n") + "\n");
    const long = Array.from({ length: 5 }, (_, i) => JSON.stringify({ text: `Long document ${i}. ` + "word ".repeat(3000) }));
    await writeFile(join(work, "data", "long.jsonl"), long.join("\n") + "\n");
  });
  after(async () => {
    await server.stop();
    await rm(work, { recursive: true, force: true });
  });

  it("refuses a lock whose commit is a path, writing nothing outside the cache (exit 2)", async () => {
    const lock = JSON.parse(await readFile(join(sample, "recipe.lock.json"), "utf8"));
    const victim = join(work, "victim");
    lock.sources[0].hf.commit = `../../../../${"victim"}`;
    const hostileLock = join(work, "hostile.lock.json");
    await writeFile(hostileLock, JSON.stringify(lock));
    const out = join(work, "out-hostile-lock");
    const r = await runCli(["build", join(repoRoot, "recipes", "sample.yaml"), "--out", out, "--locked", "--lock", hostileLock], { env });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /hostile\.lock\.json: sources\[0\]\.hf\.commit: a commit sha \(40 lowercase hex digits\)/);
    assert.ok(!existsSync(victim));
    const tokLock = JSON.parse(await readFile(join(sample, "recipe.lock.json"), "utf8"));
    tokLock.tokenizer.commit = "../../x";
    await writeFile(hostileLock, JSON.stringify(tokLock));
    const t = await runCli(["build", join(repoRoot, "recipes", "sample.yaml"), "--out", out, "--locked", "--lock", hostileLock], { env });
    assert.equal(t.code, 2, t.stderr);
    assert.match(t.stderr, /tokenizer\.commit: a commit sha/);
  });

  it("refuses a hostile listing as a runtime failure (exit 1), naming the field", async () => {
    server.listingOverrides.set("main/train-00000-of-00001.parquet", { lfs: { oid: "../../../../escape", size: 1, pointerSize: 134 } });
    try {
      const out = join(work, "out-hostile-listing");
      const r = await runCli(["build", join(repoRoot, "recipes", "sample.yaml"), "--out", out], { env: { ...env, HF_HOME: join(work, "hf-hostile") } });
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /main\/train-00000-of-00001\.parquet the lfs\.oid "\.\.\/\.\.\/\.\.\/\.\.\/escape", which is not a hex digest/);
      assert.ok(!existsSync(join(work, "escape")));
    } finally {
      server.listingOverrides.clear();
    }
  });

  it("keeps the previous complete build when a locked rebuild fails (the Hub no longer serves a file)", async () => {
    const before = await snapshot(sample);
    server.faults.push({ match: "train-00000-of-00001.parquet", kind: "gone" });
    try {
      const r = await runCli(["build", join(repoRoot, "recipes", "sample.yaml"), "--out", sample, "--locked"], { env: { ...env, HF_HOME: join(work, "hf-empty") } });
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /no longer served by the Hub/);
    } finally {
      server.faults.length = 0;
    }
    const after = await snapshot(sample);
    assert.deepEqual([...after.keys()], [...before.keys()]);
    for (const [name, bytes] of before) assert.ok(bytes.equals(after.get(name)!), `${name} is unchanged`);
    const v = await runCli(["verify", sample], { env });
    assert.equal(v.code, 0, v.stderr);
  });

  it("builds offline from the cache without --locked (HF_HUB_OFFLINE=1), saying which revisions it used", async () => {
    const out = join(work, "offline");
    const r = await runCli(["build", join(repoRoot, "recipes", "sample.yaml"), "--out", out], { env: { ...env, HF_ENDPOINT: "http://127.0.0.1:9", HF_HUB_OFFLINE: "1" } });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /offline: dataset openai\/gsm8k@main is commit [0-9a-f]{40} in the cache/);
    assert.doesNotMatch(r.stderr, /retry/);
    const a = await snapshot(sample);
    const b = await snapshot(out);
    for (const [name, bytes] of a) assert.ok(bytes.equals(b.get(name)!), `${name} equals the online build's`);
  });

  it("refuses a recipe name that is not a plain name, and an --out holding the user's files unless --force", async () => {
    const project = join(work, "project");
    await mkdir(project);
    await writeFile(join(project, "README.md"), "my own readme\n");
    const dots = join(project, "dots.yaml");
    await writeFile(dots, localRecipe("..", `  - name: s\n    weight: 1\n    local: { files: ["../data/short.jsonl"] }\n`));
    const r = await runCli(["build", dots], { cwd: project });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /dots\.yaml:1:7: name: a name of letters, digits/);
    const path = join(project, "ok.yaml");
    await writeFile(path, localRecipe("ok", `  - name: s\n    weight: 1\n    local: { files: ["../data/short.jsonl"] }\n`));
    const refused = await runCli(["build", path, "--out", project]);
    assert.equal(refused.code, 2, refused.stderr);
    assert.match(refused.stderr, /holds files chuxin-data did not write \((?:README\.md, )?.*ok\.yaml.*\).*--force/);
    assert.equal(await readFile(join(project, "README.md"), "utf8"), "my own readme\n");
    assert.ok(!existsSync(join(project, "manifest.json")));
    const forced = await runCli(["build", path, "--out", project, "--force"]);
    assert.equal(forced.code, 0, forced.stderr);
    assert.match(await readFile(join(project, "README.md"), "utf8"), /chuxin-data/);
  });

  it("says who holds an output folder that another build has locked, and takes over a lock whose process is gone", async () => {
    const path = join(work, "locked.yaml");
    await writeFile(path, localRecipe("locked", `  - name: s\n    weight: 1\n    local: { files: ["data/short.jsonl"] }\n`));
    const out = join(work, "out-locked");
    await mkdir(out);
    // This test's own process is alive: its lock must be respected.
    await writeFile(join(out, ".chuxin.lock"), JSON.stringify({ pid: process.pid, host: hostname(), command: "chuxin-data build", started: "2026-01-01T00:00:00Z" }));
    const r = await runCli(["build", path, "--out", out]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`is in use by 'chuxin-data build' \\(pid ${process.pid} on .*\\); wait for it to finish, or, if that process is gone, delete .*\\.chuxin\\.lock`));
    assert.ok(!existsSync(join(out, "manifest.json")));
    // A lock left by a process that no longer exists (a kill -9) is stale.
    await writeFile(join(out, ".chuxin.lock"), JSON.stringify({ pid: 2 ** 22 + 12345, host: hostname(), command: "chuxin-data build", started: "2026-01-01T00:00:00Z" }));
    const again = await runCli(["build", path, "--out", out]);
    assert.equal(again.code, 0, again.stderr);
    assert.ok(!existsSync(join(out, ".chuxin.lock")), "the lock is released when the build ends");
  });

  it("warns, in the output and the manifest, when a source's documents cannot come near its target", async () => {
    const path = join(work, "share.yaml");
    await writeFile(
      path,
      localRecipe(
        "share",
        `  - name: short\n    weight: 0.5\n    local: { files: ["data/short.jsonl"] }\n  - name: long\n    weight: 0.5\n    local: { files: ["data/long.jsonl"] }\n`,
        "target_tokens: 800\n",
      ),
    );
    const out = join(work, "out-share");
    const r = await runCli(["build", path, "--out", out]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /warning: source 'long': 0 tokens selected against a target of 400 \(0\.0%\)/);
    const m = JSON.parse(await readFile(join(out, "manifest.json"), "utf8"));
    assert.equal(m.warnings.length, 1);
    assert.match(m.warnings[0], /source 'long'/);
    assert.match(await readFile(join(out, "MIXTURE.md"), "utf8"), /\*\*Warning:\*\* source 'long'/);
    // The bundled recipe meets its targets: no warnings key at all.
    assert.equal(JSON.parse(await readFile(join(sample, "manifest.json"), "utf8")).warnings, undefined);
  });

  it("refuses a build with no sequences, naming the numbers (exit 1), and absurd max_epochs at once (exit 2)", async () => {
    const path = join(work, "empty.yaml");
    await writeFile(path, localRecipe("empty", `  - name: s\n    weight: 1\n    local: { files: ["data/short.jsonl"] }\n`).replace("sequence_length: 64", "sequence_length: 100000"));
    const out = join(work, "out-empty");
    const r = await runCli(["build", path, "--out", out]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /the mixture holds \d+ tokens, fewer than one sequence of sequence_length 100000/);
    assert.ok(!existsSync(join(out, "manifest.json")));
    // An empty build written by an older version is rejected by verify.
    const m = JSON.parse(await readFile(join(sample, "manifest.json"), "utf8"));
    await mkdir(join(work, "out-empty-old"));
    await writeFile(join(work, "out-empty-old", "manifest.json"), JSON.stringify({ ...m, shards: [], total_sequences: 0, total_tokens: 0, sources: [] }));
    const v = await runCli(["verify", join(work, "out-empty-old")]);
    assert.equal(v.code, 1, v.stderr);
    assert.match(v.stdout + v.stderr, /the build holds no sequences/);
    const epochs = join(work, "epochs.yaml");
    // Refused with the recipe, before anything is read: each epoch is a pass in the plan, however small the source
    // (10,000,000 passes of 40 documents once ran silently for minutes under --no-disk-check).
    for (const [epochsValue, where] of [["1000000000", "recipe"], ["10000000", "source"]] as const) {
      const extra = where === "recipe" ? `max_epochs: ${epochsValue}\n` : "";
      const perSource = where === "source" ? `    max_epochs: ${epochsValue}\n` : "";
      await writeFile(epochs, localRecipe("epochs", `  - name: s\n    weight: 1\n${perSource}    local: { files: ["data/short.jsonl"] }\n`, extra));
      const started = Date.now();
      const e = await runCli(["build", epochs, "--out", join(work, "out-epochs"), "--no-disk-check"]);
      assert.equal(e.code, 2, e.stderr);
      assert.match(e.stderr, /epochs\.yaml:\d+:\d+: .*max_epochs: at most 10,000 \(each epoch is a pass of the source's documents in the plan\); to fill a budget, set target_tokens and add data/);
      assert.doesNotMatch(e.stderr, /ingest|tokenize:/);
      assert.ok(Date.now() - started < 30_000);
    }
  });

  it("names the folder and the problem when --out is a file or on a read-only filesystem (exit 2), and refuses to replace another recipe's build unless --force", async (t) => {
    const path = join(work, "other.yaml");
    await writeFile(path, localRecipe("other", `  - name: s\n    weight: 1\n    local: { files: ["data/short.jsonl"] }\n`));
    const file = join(work, "a-file");
    await writeFile(file, "not a folder\n");
    for (const out of [file, join(file, "below")]) {
      const r = await runCli(["build", path, "--out", out]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /--out .*a-file(\/below)?: (it|.*a-file) is a file, not a folder; choose a folder path for --out/);
    }
    // Another recipe's build in the folder: named, and kept.
    const before = await snapshot(sample);
    const other = await runCli(["build", path, "--out", sample]);
    assert.equal(other.code, 2, other.stderr);
    assert.match(other.stderr, /holds the build of recipe 'sample' \(sample\.yaml\), and this is a build of 'other' \(other\.yaml\); choose another --out \(the default is out\/other\), or pass --force to replace that build/);
    assert.deepEqual([...(await snapshot(sample)).entries()], [...before.entries()]);
    const readOnly = join(work, "read-only");
    await mkdir(readOnly);
    try {
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", readOnly], { stdio: "ignore" });
    } catch (error) {
      t.skip(`cannot mount a read-only tmpfs here (${(error as Error).message.split("\n")[0]})`);
      return;
    }
    try {
      const r = await runCli(["build", path, "--out", join(readOnly, "out")]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /--out .*read-only\/out: cannot write in .*read-only \(a read-only filesystem\); choose a writable --out/);
    } finally {
      execFileSync("umount", [readOnly]);
    }
  });

  it("says why a source is empty (every row's skip reason)", async () => {
    await writeFile(join(work, "data", "nulls.jsonl"), Array.from({ length: 100 }, () => `{"text": null}`).join("\n") + "\n");
    const path = join(work, "nulls.yaml");
    await writeFile(path, localRecipe("nulls", `  - name: nulls\n    weight: 1\n    local: { files: ["data/nulls.jsonl"] }\n  - name: s\n    weight: 1\n    local: { files: ["data/short.jsonl"] }\n`));
    for (const command of ["build", "plan"]) {
      const r = await runCli([command, path, "--out", join(work, `out-nulls-${command}`)]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /source 'nulls' has no documents left: 100 rows read: 100 null_text; remove it/);
      assert.doesNotMatch(r.stdout, /4\.000/);
    }
  });

  it("follows a symlinked folder, names a dangling link, and says when files lie outside the recipe's folder", async () => {
    const project = join(work, "links");
    await mkdir(project);
    await symlink(join(work, "data"), join(project, "linked"));
    const path = join(project, "links.yaml");
    await writeFile(path, localRecipe("links", `  - name: s\n    weight: 1\n    local: { files: ["linked/short.jsonl", "../data/long.jsonl"] }\n`));
    const r = await runCli(["build", path, "--out", join(work, "out-links")]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /source 's': 1 file\(s\) outside the recipe's folder .* \(\.\.\/data\/long\.jsonl\)/);
    await symlink(join(work, "nowhere.jsonl"), join(project, "dangling.jsonl"));
    await writeFile(path, localRecipe("links", `  - name: s\n    weight: 1\n    local: { files: ["*.jsonl"] }\n`));
    const d = await runCli(["build", path, "--out", join(work, "out-dangling")]);
    assert.equal(d.code, 2, d.stderr);
    assert.match(d.stderr, /source 's': .*dangling\.jsonl is a symbolic link to a missing file/);
  });

  it("points at the line of a YAML alias bomb, an unresolved alias, and a non-finite weight (exit 2)", async () => {
    const cases: [string, RegExp][] = [
      [`a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n`, /bomb\.yaml:2:\d+: YAML aliases expand to too many values/],
      [`name: x\nseed: *nope\nsources: []\n`, /bomb\.yaml:2:7: YAML alias \*nope has no anchor &nope before it/],
      [localRecipe("inf", `  - name: s\n    weight: .inf\n    local: { files: ["data/short.jsonl"] }\n`), /bomb\.yaml:8:13: sources\[0\]\.weight: expected a finite number, got \.inf/],
    ];
    for (const [text, expected] of cases) {
      const path = join(work, "bomb.yaml");
      await writeFile(path, text);
      const r = await runCli(["validate", path]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, expected);
    }
  });

  it("refuses, before downloading anything, inputs that do not fit the Hugging Face cache's free space, with the numbers", async (t) => {
    const dir = join(work, "cache-disk");
    const hf = join(dir, "hf");
    await mkdir(hf, { recursive: true });
    const recipe = join(dir, "recipe.yaml");
    // fixture/math's parquet files are 1.4 MB; the cache gets a 512 KiB tmpfs.
    await writeFile(recipe, localRecipe("cachedisk", `  - name: math\n    weight: 1\n    hf: { repo: fixture/math, revision: main, files: ["data/*.parquet"] }\n`));
    try {
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=512k", "tmpfs", hf], { stdio: "ignore" });
    } catch (error) {
      t.skip(`cannot mount a small tmpfs here (${(error as Error).message.split("\n")[0]})`);
      return;
    }
    try {
      const r = await runCli(["build", recipe, "--out", join(dir, "out")], { env: { ...env, HF_HOME: hf } });
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /the 1 input file\(s\) not yet in the Hugging Face cache need 1 MiB and .*hub has \d+ KiB free; free space there, point HF_HOME \(or HF_HUB_CACHE\) at a larger disk, or build as partitions/);
      const blobs = join(hf, "hub", "datasets--fixture--math", "blobs");
      assert.ok(!existsSync(blobs) || (await readdir(blobs)).length === 0, "nothing was downloaded");
    } finally {
      execFileSync("umount", [hf]);
    }
  });

  it("says before tokenising when the tokens and shards will not fit the disk, and before packing when the exact shards will not, with the numbers; plan says what they need", async (t) => {
    const dir = join(work, "disk");
    const out = join(dir, "out");
    await mkdir(join(dir, "data"), { recursive: true });
    await mkdir(out, { recursive: true });
    await writeFile(join(dir, "data", "d.jsonl"), Array.from({ length: 300 }, (_, i) => JSON.stringify({ text: `document ${i} ${"word ".repeat(30)}` })).join("\n") + "\n");
    const recipe = join(dir, "recipe.yaml");
    await writeFile(recipe, localRecipe("disk", `  - name: s\n    weight: 1\n    local: { files: ["data/d.jsonl"] }\n`, "max_epochs: 2000\n"));
    try {
      // A 16 MiB tmpfs: the work folder fits, the 84 MiB of shards do not. Needs root (as CI and these machines run).
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=16m", "tmpfs", out], { stdio: "ignore" });
    } catch (error) {
      t.skip(`cannot mount a small tmpfs here (${(error as Error).message.split("\n")[0]})`);
      return;
    }
    try {
      // Stated from the file's size before a row is read (53 KiB of JSON lines, 2,000 epochs of it); refused with
      // the kept text's exact size before tokenising.
      const early = await runCli(["build", recipe, "--out", out]);
      assert.equal(early.code, 1, early.stderr);
      assert.match(early.stderr, /disk: about \d+ MiB in .*\.work at the build's peak, from 1 input file\(s\) of \d+ KiB \(.*of shards staged there; assuming 2 bytes of text a token\); 1\d MiB free there\n/);
      assert.match(
        early.stderr,
        /error: disk: the \d+ KiB of text left after dedup need about \d+ MiB more in .*\.work \(\d+ KiB of token chunks at 2 bytes of text a token, then \d+ MiB of shards where the text's database was\); 1\d MiB free there — not enough\. .*--partition i\/N.*--no-disk-check/,
      );
      assert.doesNotMatch(early.stderr, /tokenize:/);
      assert.ok(!existsSync(join(out, ".work", "corpus.duckdb")), "a failed build does not leave its text behind");
      // --no-disk-check goes on to the exact figure, known once the mixture is planned.
      const r = await runCli(["build", recipe, "--out", out, "--no-disk-check"]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /the shards need 84 MiB \(343,437 sequences of 64 tokens\) and .*staging has 1\d MiB free; free space there, build to another --out, or lower target_tokens/);
      assert.ok(!(await readdir(out)).includes("manifest.json"));
      const p = await runCli(["plan", recipe, "--out", out]);
      assert.equal(p.code, 0, p.stderr);
      assert.match(p.stdout, /disk: the shards need 84 MiB; .*\.work holds \d+ [KM]iB .*; 1\d MiB free there — NOT ENOUGH for the shards/);
    } finally {
      execFileSync("umount", [out]);
    }
  });
});
