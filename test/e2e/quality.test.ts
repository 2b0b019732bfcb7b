/**
 * The quality filters in a build (recipes/quality-fixtures.yaml: Gopher quality and repetition, C4 and FineWeb on
 * prose, only repetition on poetry, none on code): every rule a source runs is its own skip reason in the manifest,
 * the counts add up, `inspect --skipped` names the rows, the same bytes for any worker count and for 3 partitions
 * merged, and bad settings are refused with their file:line:col before any work.
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { QUALITY_RULES, qualityReason } from "../../src/recipe/quality-presets.ts";
import { runCli } from "../helpers/cli.ts";
import { HubServer } from "../helpers/hub-server.ts";
import { assertSameOutput, outputFiles } from "../helpers/output-files.ts";
import { repoRoot, sharedHub } from "../helpers/paths.ts";


const sum = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);

describe("quality filters in a build", () => {
  let server: HubServer, work: string, env: Record<string, string>, recipe: string;
  before(async () => {
    server = await new HubServer({ root: sharedHub }).start();
    work = await mkdtemp(join(tmpdir(), "chuxin-quality-"));
    env = { HF_ENDPOINT: server.url, HF_HOME: join(work, "hf") };
    recipe = join(repoRoot, "recipes", "quality-fixtures.yaml");
  });
  after(async () => {
    await server?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it("counts each rule a source runs as its own skip reason, and every row read is accounted for", async (t) => {
    const r = await runCli(["build", recipe, "--out", join(work, "w1"), "--workers", "1"], { env });
    assert.equal(r.code, 0, r.stderr);
    const m = JSON.parse(await readFile(join(work, "w1", "manifest.json"), "utf8"));
    const [prose, poetry, code] = m.sources;
    const all = QUALITY_RULES.map(qualityReason);
    const repetition = QUALITY_RULES.filter(([p]) => p === "gopher_repetition").map(qualityReason);
    const has = (s: { documents_skipped: Record<string, number> }) => Object.keys(s.documents_skipped).filter((k) => k.includes("."));
    assert.deepEqual(has(prose).sort(), [...all].sort(), "prose runs every preset: each rule counted, zero included");
    assert.deepEqual(has(poetry).sort(), [...repetition].sort(), "poetry runs gopher_repetition only");
    assert.deepEqual(has(code), [], "code runs none");
    for (const s of m.sources) assert.equal(s.documents_read, sum(s.documents_skipped) + s.duplicates_removed.total + s.documents_available, s.name);
    assert.ok(sum(prose.documents_skipped) > 0 && sum(poetry.documents_skipped) > 0);
    // The skipped rows named for a reason are rows of that source's files.
    const reason = Object.entries(prose.documents_skipped as Record<string, number>).find(([k, n]) => k.includes(".") && n > 0)![0];
    const named = prose.skipped_rows[reason];
    assert.equal(named.length, Math.min(100, prose.documents_skipped[reason]));
    const shown = await runCli(["inspect", join(work, "w1"), "--skipped", reason], { env });
    assert.equal(shown.code, 0, shown.stderr);
    assert.ok(shown.stdout.includes(`${named[0].file} row ${named[0].row}`));
    t.diagnostic(`skipped: ${m.sources.map((s: { name: string; documents_skipped: Record<string, number> }) => `${s.name} ${sum(s.documents_skipped)}`).join(", ")}`);
    const unknown = await runCli(["inspect", join(work, "w1"), "--skipped", reason.slice(0, -1)], { env });
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, new RegExp(`did you mean '${reason.replace(/\./g, "\\.")}'`));
  });

  it("gives the same bytes with 2 workers, and from 3 partitions merged in one job", async () => {
    const one = await outputFiles(join(work, "w1"));
    assert.equal((await runCli(["build", recipe, "--out", join(work, "w2"), "--workers", "2"], { env })).code, 0);
    assertSameOutput(one, await outputFiles(join(work, "w2")), "--workers 2");
    const parts = [0, 1, 2].map((i) => join(work, `p${i}`));
    for (const [i, dir] of parts.entries()) {
      const p = await runCli(["build", recipe, "--partition", `${i}/3`, "--out", dir], { env });
      assert.equal(p.code, 0, p.stderr);
    }
    const merged = await runCli(["build", recipe, "--merge", ...parts, "--out", join(work, "merged")], { env });
    assert.equal(merged.code, 0, merged.stderr);
    assertSameOutput(one, await outputFiles(join(work, "merged")), "3 partitions merged");
  });

  for (const [what, from, to, expected] of [
    ["an unknown rule", "gopher_quality: { min_doc_words: 30 }", "gopher_quality: { min_doc_word: 30 }", /quality\.yaml:10:\d+: filters\.gopher_quality\.min_doc_word: unknown key 'min_doc_word' — did you mean 'min_doc_words'\?/],
    ["a threshold of the wrong type", "c4: true", "c4: { min_num_sentences: many }", /quality\.yaml:12:\d+: filters\.c4\.min_num_sentences: expected number, got string "many"/],
    ["a source naming a preset that is off", "  fineweb: true\n", "", /quality\.yaml:2\d:\d+: sources\[1\]\.filters\[0\]: 'fineweb' is not on in the recipe's filters; add `fineweb: true` under filters/],
  ] as const) {
    it(`refuses ${what} with its file:line:col, before any work`, async () => {
      const bad = join(work, "quality.yaml");
      let text = (await readFile(recipe, "utf8")).replace(from, to);
      if (what.startsWith("a source")) text = text.replace("filters: [gopher_repetition]", "filters: [fineweb]");
      await writeFile(bad, text);
      const r = await runCli(["build", bad, "--out", join(work, "bad")], { env });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, expected);
    });
  }
});
