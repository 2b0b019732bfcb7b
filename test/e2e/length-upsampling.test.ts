/**
 * Length upsampling in a build (recipes/long-context-fixtures.yaml, the shipped long-context recipe's shape over the fixtures): each source's short documents kept at exactly the share asked (rounded to a whole
 * document) by a seeded choice, the counts and length histograms in the manifest and MIXTURE.md, and the same bytes
 * whatever the worker count, and for a single build and its partitions merged.
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


describe("length upsampling", () => {
  let server: HubServer, work: string, env: Record<string, string>, recipe: string;
  before(async () => {
    server = await new HubServer({ root: sharedHub }).start();
    work = await mkdtemp(join(tmpdir(), "chuxin-upsampling-"));
    env = { HF_ENDPOINT: server.url, HF_HOME: join(work, "hf") };
    recipe = join(repoRoot, "recipes", "long-context-fixtures.yaml");
  });
  after(async () => {
    await server?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it("keeps exactly round(keep_short × short documents) per source, and reports the histograms, before and after", async () => {
    const r = await runCli(["build", recipe, "--out", join(work, "w1"), "--workers", "1"], { env });
    assert.equal(r.code, 0, r.stderr);
    const m = JSON.parse(await readFile(join(work, "w1", "manifest.json"), "utf8"));
    const [prose, code, poetry] = m.sources;
    assert.equal(code.length_upsampling, undefined, "a source with length_upsampling: false is left alone");
    for (const [s, keep] of [[prose, 0.25], [poetry, 0.5]] as const) {
      const u = s.length_upsampling;
      assert.equal(u.short_below, 256);
      assert.equal(u.keep_short, keep);
      assert.equal(u.short_kept, Math.round(keep * u.short_documents));
      assert.equal(u.documents_dropped, u.short_documents - u.short_kept);
      const sum = (h: Record<string, number>) => Object.values(h).reduce((a, b) => a + b, 0);
      assert.equal(sum(u.before.documents) - sum(u.after.documents), u.documents_dropped);
      // What the mixture plan could pick is what upsampling left: documents and tokens (EOS included).
      assert.equal(sum(u.after.documents), s.documents_available);
      assert.equal(sum(u.after.tokens), s.tokens_available);
    }
    assert.equal(poetry.length_upsampling.short_kept, Math.round(0.5 * poetry.length_upsampling.short_documents));
    const shares = m.sources.map((s: { share: number }) => s.share);
    shares.forEach((share: number, i: number) => assert.ok(Math.abs(share - [0.5, 0.2, 0.3][i]!) < 0.01, `share ${share}`));
    const mixture = await readFile(join(work, "w1", "MIXTURE.md"), "utf8");
    assert.match(mixture, /## Length upsampling/);
    assert.match(mixture, new RegExp(`\\| en-prose \\| < 256 \\| 0\\.25 \\| ${prose.length_upsampling.short_documents.toLocaleString("en-US")} \\| ${prose.length_upsampling.short_kept}`));
  });

  it("gives the same bytes with 2 workers, and from 2 partitions merged", async () => {
    const one = await outputFiles(join(work, "w1"));
    const r = await runCli(["build", recipe, "--out", join(work, "w2"), "--workers", "2"], { env });
    assert.equal(r.code, 0, r.stderr);
    assertSameOutput(one, await outputFiles(join(work, "w2")), "--workers 2");
    for (const i of [0, 1]) {
      const p = await runCli(["build", recipe, "--partition", `${i}/2`, "--out", join(work, `p${i}`)], { env });
      assert.equal(p.code, 0, p.stderr);
    }
    const merged = await runCli(["build", recipe, "--merge", join(work, "p0"), join(work, "p1"), "--out", join(work, "merged")], { env });
    assert.equal(merged.code, 0, merged.stderr);
    assertSameOutput(one, await outputFiles(join(work, "merged")), "2 partitions merged");
  });

  it("refuses keep_short outside [0, 1] with its file:line:col, before any work", async () => {
    const bad = join(work, "bad.yaml");
    await writeFile(bad, (await readFile(recipe, "utf8")).replace("keep_short: 0.25", "keep_short: 1.5"));
    const r = await runCli(["build", bad, "--out", join(work, "bad")], { env });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /bad\.yaml:8:\d+: length_upsampling\.keep_short: .*(<=1|1)/);
  });
});
