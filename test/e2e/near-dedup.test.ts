/**
 * Near-duplicate removal in a build (recipes/near-dups-fixtures.yaml: fixture/en-prose and fixture/near-dups, whose
 * English originals are also en-prose rows): the counts add up in the manifest, MIXTURE.md and `inspect
 * --near-duplicates` say what was found, the same bytes whatever the worker count and from 1 or 3 partitions merged
 * (in one job and as steps), and bad minhash settings are refused with their file:line:col before any work.
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { runCli } from "../helpers/cli.ts";
import { HubServer } from "../helpers/hub-server.ts";
import { assertSameOutput, outputFiles } from "../helpers/output-files.ts";
import { repoRoot, sharedHub } from "../helpers/paths.ts";

const total = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);

describe("near-dedup in a build", () => {
  let server: HubServer, work: string, env: Record<string, string>, recipe: string;
  before(async () => {
    server = await new HubServer({ root: sharedHub }).start();
    work = await mkdtemp(join(tmpdir(), "chuxin-near-dedup-"));
    env = { HF_ENDPOINT: server.url, HF_HOME: join(work, "hf") };
    recipe = join(repoRoot, "recipes", "near-dups-fixtures.yaml");
  });
  after(async () => {
    await server?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it("removes near-duplicates within and across sources, and every row read is accounted for", async (t) => {
    const r = await runCli(["build", recipe, "--out", join(work, "w1"), "--workers", "1"], { env });
    assert.equal(r.code, 0, r.stderr);
    const m = JSON.parse(await readFile(join(work, "w1", "manifest.json"), "utf8"));
    const near = m.near_duplicates;
    assert.equal(near.ngram, 5);
    assert.equal(near.verify_jaccard, 0.8);
    assert.match(near.words, /CJK character/);
    let removed = 0;
    for (const s of m.sources) {
      const n = s.near_duplicates_removed;
      assert.equal(n.total, n.within_source + n.across_sources);
      removed += n.total;
      // Each row read is skipped, an exact duplicate, a near-duplicate, or a document the mixture could pick.
      assert.equal(s.documents_read, total(s.documents_skipped) + s.duplicates_removed.total + n.total + s.documents_available, s.name);
    }
    assert.equal(removed, near.documents_removed);
    assert.ok(near.documents_removed > 0 && near.clusters > 0);
    assert.ok(near.candidate_pairs >= near.documents_removed);
    const [prose, dups] = m.sources;
    assert.ok(prose.near_duplicates_removed.within_source > 0, "en-prose has near-duplicates of its own");
    assert.ok(dups.near_duplicates_removed.across_sources > 0, "fixture/near-dups' variants of en-prose rows go to en-prose's copies");
    t.diagnostic(`near-duplicates removed: ${near.documents_removed} of ${prose.documents_read + dups.documents_read} rows, ${near.clusters} clusters, ${near.candidate_pairs} candidate pairs, ${near.pairs_rejected} under verify_jaccard`);
    const mixture = await readFile(join(work, "w1", "MIXTURE.md"), "utf8");
    assert.match(mixture, /near-duplicates removed \|/);
    assert.match(mixture, new RegExp(`- Near-duplicates: MinHash LSH: 14 bands × 8 rows.*${near.documents_removed} documents removed`));
    const card = await readFile(join(work, "w1", "README.md"), "utf8");
    assert.match(card, /## Near-duplicates/);
  });

  it("shows sample clusters with `inspect --near-duplicates`, the kept document first", async () => {
    const r = await runCli(["inspect", join(work, "w1"), "--near-duplicates"], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /near-duplicates removed from \d+ clusters/);
    assert.match(r.stdout, /cluster 1:\n {2}kept {4}en-prose data\/train-\d+-of-\d+\.parquet row \d+: .+\n {2}removed /);
    const json = await runCli(["inspect", join(work, "w1"), "--near-duplicates", "--json"], { env });
    const samples = JSON.parse(json.stdout).near_duplicates.samples;
    assert.ok(samples.length > 0);
    for (const cluster of samples) assert.deepEqual(cluster.map((m: { kept: boolean }) => m.kept), [true, ...Array(cluster.length - 1).fill(false)]);
  });

  it("gives the same bytes with 2 workers", async () => {
    const r = await runCli(["build", recipe, "--out", join(work, "w2"), "--workers", "2"], { env });
    assert.equal(r.code, 0, r.stderr);
    assertSameOutput(await outputFiles(join(work, "w1")), await outputFiles(join(work, "w2")), "--workers 2");
  });

  it("takes the band keys of the rows the quality filters pass from that pass, with the same result", async (t) => {
    // Gopher repetition with every share at 1, which no row exceeds, on en-prose only: en-prose is hashed while the
    // filters read it, near-dups after dedup, and the build keeps the same documents as w1, which hashes both after.
    const fused = join(work, "fused.yaml");
    const shares = ["dup_para_frac", "dup_para_char_frac", "dup_line_frac", "dup_line_char_frac", "top_2_gram", "top_3_gram", "top_4_gram"]
      .concat([5, 6, 7, 8, 9, 10].map((n) => `duplicated_${n}_n_grams`))
      .map((name) => `${name}: 1`);
    const text = (await readFile(recipe, "utf8"))
      .replace("dedup:\n", `filters:\n  gopher_repetition: { ${shares.join(", ")} }\ndedup:\n`)
      .replace("    hf: { repo: fixture/near-dups", "    filters: false\n    hf: { repo: fixture/near-dups");
    assert.notEqual(text, await readFile(recipe, "utf8"));
    await writeFile(fused, text);
    const r = await runCli(["build", fused, "--out", join(work, "fused"), "--workers", "1"], { env });
    assert.equal(r.code, 0, r.stderr);
    const want = JSON.parse(await readFile(join(work, "w1", "manifest.json"), "utf8"));
    const got = JSON.parse(await readFile(join(work, "fused", "manifest.json"), "utf8"));
    assert.match(r.stdout + r.stderr, /band keys of the rows that pass taken for near-dedup/);
    assert.deepEqual(got.near_duplicates, want.near_duplicates);
    assert.deepEqual(got.sources.map((s: { near_duplicates_removed: unknown }) => s.near_duplicates_removed), want.sources.map((s: { near_duplicates_removed: unknown }) => s.near_duplicates_removed));
    const shards = (files: Map<string, Buffer>) => new Map([...files].filter(([name]) => /\.(npy|bin)$/.test(name)));
    const wantShards = shards(await outputFiles(join(work, "w1")));
    assert.ok(wantShards.size > 0);
    assertSameOutput(wantShards, shards(await outputFiles(join(work, "fused"))), "band keys from the quality pass");
    t.diagnostic(`${got.near_duplicates.documents_removed} near-duplicates removed either way; ${wantShards.size} shard files the same`);
  });

  it("says so when a build has no near-duplicate report", async () => {
    const plain = join(work, "plain.yaml");
    await writeFile(plain, (await readFile(recipe, "utf8")).replace(/dedup:\n {2}minhash: .*\n/, ""));
    assert.equal((await runCli(["build", plain, "--out", join(work, "plain")], { env })).code, 0);
    const r = await runCli(["inspect", join(work, "plain"), "--near-duplicates"], { env });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /did not look for near-duplicates; set dedup\.minhash/);
  });

  it("gives the same bytes from 1 and 3 partitions merged, in one job and as steps (minhash jobs by band range)", async (t) => {
    const one = await outputFiles(join(work, "w1"));
    const partition = async (i: number, n: number) => {
      const dir = join(work, `p${i}-of-${n}`);
      const p = await runCli(["build", recipe, "--partition", `${i}/${n}`, "--out", dir], { env });
      assert.equal(p.code, 0, p.stderr);
      return dir;
    };
    const whole = await partition(0, 1);
    const merged1 = await runCli(["build", recipe, "--merge", whole, "--out", join(work, "merged-1")], { env });
    assert.equal(merged1.code, 0, merged1.stderr);
    assertSameOutput(one, await outputFiles(join(work, "merged-1")), "1 partition merged");
    const parts = await Promise.all([0, 1, 2].map((i) => partition(i, 3)));
    const merged3 = await runCli(["build", recipe, "--merge", ...parts, "--out", join(work, "merged-3")], { env });
    assert.equal(merged3.code, 0, merged3.stderr);
    assertSameOutput(one, await outputFiles(join(work, "merged-3")), "3 partitions merged in one job");
    const out = join(work, "steps-3");
    const step = (name: string, index?: number) => runCli(["build", recipe, "--merge", ...parts, "--out", out, "--merge-step", name, ...(index !== undefined ? ["--index", String(index)] : [])], { env });
    // Two of three band ranges: the plan refuses until the third is done.
    for (const b of [0, 2]) assert.equal((await step("minhash", b)).code, 0);
    const partial = await step("plan");
    assert.equal(partial.code, 2, partial.stderr);
    assert.match(partial.stderr, /the merge's minhash steps are not all done: range\(s\) 1 not finished\. Run chuxin-data build .* --merge-step minhash --index b for each/);
    const m1 = await step("minhash", 1);
    assert.equal(m1.code, 0, m1.stderr);
    t.diagnostic(m1.stdout.split("\n")[0]!);
    for (const h of [0, 1, 2]) assert.equal((await step("dedup", h)).code, 0);
    const plan = await step("plan");
    assert.equal(plan.code, 0, plan.stderr);
    for (const i of [0, 1, 2]) assert.equal((await step("scatter", i)).code, 0);
    for (const j of [0, 1, 2]) assert.equal((await step("gather", j)).code, 0);
    const finish = await step("finish");
    assert.equal(finish.code, 0, finish.stderr);
    assertSameOutput(one, await outputFiles(out), "3 partitions merged as steps");
  });

  for (const [what, setting, expected] of [
    ["bands of 0", "{ bands: 0 }", /bad\.yaml:11:\d+: dedup\.minhash\.bands: .*(>=1|at least 1|1)/],
    ["rows of 0", "{ rows: 0 }", /bad\.yaml:11:\d+: dedup\.minhash\.rows: /],
    ["an ngram of 0", "{ ngram: 0 }", /bad\.yaml:11:\d+: dedup\.minhash\.ngram: /],
    ["an unknown setting", "{ band: 14 }", /bad\.yaml:11:\d+: dedup\.minhash.*band/],
    ["a threshold of the wrong type", "{ verify_jaccard: high }", /bad\.yaml:11:\d+: dedup\.minhash\.verify_jaccard: /],
    ["more hash functions than the addon takes", "{ bands: 256, rows: 64 }", /bad\.yaml:11:\d+: dedup\.minhash\.rows: bands × rows is 16384; at most 4096/],
  ] as const) {
    it(`refuses ${what} with its file:line:col, before any work`, async () => {
      const bad = join(work, "bad.yaml");
      await writeFile(bad, (await readFile(recipe, "utf8")).replace(/minhash: .*/, `minhash: ${setting}`));
      const r = await runCli(["build", bad, "--out", join(work, "bad")], { env });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, expected);
    });
  }
});
