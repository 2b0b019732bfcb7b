import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { runCli } from "../helpers/cli.ts";
import { repoRoot, sharedTokenizer } from "../helpers/paths.ts";

describe("CLI commands besides build", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "chuxin-cli-"));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  it("schema prints the JSON Schema the bundled recipes point editors at", async () => {
    const r = await runCli(["schema"]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), JSON.parse(await readFile(join(repoRoot, "recipes", "recipe.schema.json"), "utf8")));
  });

  it("schema --plan prints the training plan's JSON Schema, as recipes/plan.schema.json holds it", async () => {
    const r = await runCli(["schema", "--plan"]);
    assert.equal(r.code, 0, r.stderr);
    const schema = JSON.parse(r.stdout);
    assert.deepEqual(schema, JSON.parse(await readFile(join(repoRoot, "recipes", "plan.schema.json"), "utf8")));
    const stage = schema.properties.stages.items;
    for (const key of ["name", "data", "init_from", "tokens", "rope_theta", "schedule", "lr"]) assert.ok(key in stage.properties, key);
    assert.equal(stage.additionalProperties, false);
  });

  it("validate checks a recipe offline", async () => {
    const ok = await runCli(["validate", join(repoRoot, "recipes", "fixtures.yaml")]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /fixtures\.yaml: ok \(4 sources, sequence_length 1024\)/);
    const missing = await runCli(["validate", join(dir, "nope.yaml")]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /nope\.yaml: cannot read recipe \(ENOENT\); check the path/);
    assert.match(ok.stdout, /not checked: source '\w+': fixture\/\w+@main: no lock names its files \(pass --lock, or build once\)/);
  });

  it("validate checks local files and their text column as build would, offline, with file:line:col", async () => {
    await writeFile(join(dir, "local.jsonl"), JSON.stringify({ body: "a document" }) + "\n");
    const recipe = (files: string, column: string) =>
      `name: v\ntokenizer:\n  path: ${sharedTokenizer}\nsources:\n  - name: s\n    weight: 1\n    local: { files: ["${files}"] }\n    text_column: ${column}\n`;
    const cases: [string, string, number, RegExp][] = [
      ["local.jsonl", "body", 0, /v1\.yaml: ok \(1 sources, sequence_length 4096\)\n  checked: source 's': 1 file\(s\) \(local\); 'body' in local\.jsonl/],
      ["locl.jsonl", "body", 2, /v2\.yaml:7:\d+: source 's': local\.files \["locl\.jsonl"\] match no file under .* \(did you mean 'local\.jsonl'\?\)/],
      ["*.jsonl", "bdy", 2, /v3\.yaml:8:18: source 's': local\.jsonl: text column 'bdy', which is a field of none of its first lines; they have: body \(did you mean 'body'\?\)/],
    ];
    for (const [i, [files, column, code, message]] of cases.entries()) {
      const path = join(dir, `v${i + 1}.yaml`);
      await writeFile(path, recipe(files, column));
      const r = await runCli(["validate", path]);
      assert.equal(r.code, code, r.stderr);
      assert.match(r.stdout + r.stderr, message);
    }
  });

  it("doctor says what the addon was built with and which run-time libraries it finds", async () => {
    const cache = await readFile(join(repoRoot, "native", "build", "CMakeCache.txt"), "utf8");
    const gloo = /^GLOO_LIBRARY:FILEPATH=(?!.*NOTFOUND).+$/m.test(cache);
    const plain = await runCli(["doctor", "--json"], { env: { CHUXIN_NCCL: join(dir, "no-such-libnccl.so.2") } });
    assert.equal(plain.code, 0, plain.stderr);
    const report = JSON.parse(plain.stdout);
    assert.equal(report.gloo, gloo);
    assert.equal(report.nccl.found, false);
    assert.match(report.nccl.detail, /no-such-libnccl\.so\.2/);
    // The emulated NCCL the native checks build stands in for a real one: found, with its version.
    const emulated = join(repoRoot, "native", "build", "Release", "libnccl_emulated.so");
    const found = await runCli(["doctor"], { env: { CHUXIN_NCCL: emulated } });
    assert.equal(found.code, 0, found.stderr);
    assert.match(found.stdout, /NCCL \(GPU ranks\) +yes +.*libnccl_emulated\.so \(NCCL \d+\.\d+\.\d+\)/);
    assert.match(found.stdout, new RegExp(`CPU ranks \\(gloo\\) +${gloo ? "yes" : "no"}`));
  });

  it("plan shows per-source documents, tokens and epochs, counts duplicates across sources, and writes no shards", async () => {
    const lines = (texts: string[]) => texts.map((text) => JSON.stringify({ text })).join("\n") + "\n";
    const shared = Array.from({ length: 5 }, (_, i) => `A sentence both sources carry, number ${i}.`);
    await writeFile(join(dir, "a.jsonl"), lines([...shared, ...Array.from({ length: 20 }, (_, i) => `Only in A: item ${i} of the first set.`)]));
    await writeFile(join(dir, "b.jsonl"), lines([...shared, ...Array.from({ length: 10 }, (_, i) => `Only in B: entry ${i}.`)]));
    const recipe = join(dir, "two.yaml");
    await writeFile(
      recipe,
      `name: two\nsequence_length: 32\ntokenizer: { path: ${sharedTokenizer} }\nsources:\n  - name: a\n    weight: 0.5\n    local: { files: ["a.jsonl"] }\n  - name: b\n    weight: 0.5\n    local: { files: ["b.jsonl"] }\n`,
    );
    const out = join(dir, "out");
    const plan = await runCli(["plan", recipe, "--out", out, "--json"]);
    assert.equal(plan.code, 0, plan.stderr);
    const p = plan.stdout.split("\n").filter(Boolean).map((l) => JSON.parse(l)).find((e) => e.type === "plan");
    assert.deepEqual(p.sources.map((s: any) => [s.name, s.documents_available]), [["a", 25], ["b", 10]]);
    assert.equal(p.sources[1].epochs, 4);
    assert.ok(!(await readdir(out)).some((n) => n.endsWith(".npy") || n === "manifest.json"), "plan writes no shards");
    // The table prints as the build's mixture table does: separators, epochs and shares to three places.
    const table = await runCli(["plan", recipe, "--out", out]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /\| b \| 10 \| \d+ \| 40 \| \d+ \| 4\.000 \| 50\.000% \|/);
    const build = await runCli(["build", recipe, "--out", out]);
    assert.equal(build.code, 0, build.stderr);
    const m = JSON.parse(await readFile(join(out, "manifest.json"), "utf8"));
    assert.deepEqual(m.sources[1].duplicates_removed, { within_source: 0, across_sources: 5, total: 5 });
    assert.deepEqual(m.sources[0].duplicates_removed, { within_source: 0, across_sources: 0, total: 0 });
  });

  it("tokenize gives the same ids through the native, Rust and JS implementations", async () => {
    const input = join(dir, "in.jsonl");
    await writeFile(input, ['{"text":"Hello 123 ½ world 你好"}', '{"text":"aøb  \\t x"}', '{"text":"<｜end▁of▁sentence｜>def f(x):\\n    return x**2"}'].join("\n") + "\n");
    const outs = [];
    for (const impl of ["native", "rust", "js"]) {
      const r = await runCli(["tokenize", input, "--impl", impl, "--tokenizer", sharedTokenizer]);
      assert.equal(r.code, 0, r.stderr);
      outs.push(r.stdout);
    }
    assert.equal(outs[1], outs[0]);
    assert.equal(outs[2], outs[0]);
    assert.deepEqual(JSON.parse(outs[0]!.split("\n")[0]!).ids, [17464, 207, 16, 17, 18, 207, 19109, 1843, 207, 84313]);
    const bad = join(dir, "bad.jsonl");
    await writeFile(bad, '{"text": 1}\n');
    const r = await runCli(["tokenize", bad, "--tokenizer", sharedTokenizer]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /bad\.jsonl:1: no string field 'text'/);
  });
});
