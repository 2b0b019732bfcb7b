/**
 * Decontamination in a build: documents that share a 13-gram with a benchmark's evaluation rows are removed and
 * counted per source (manifest.json, MIXTURE.md); the benchmark datasets read are pinned in the lock and replayed
 * by --locked; the default recipe is clean.
 */
import assert from "node:assert/strict";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { parquetRows } from "../helpers/parquet.ts";
import { runCli } from "../helpers/cli.ts";
import { sharedHub, sharedTokenizer } from "../helpers/paths.ts";
import { useSampleBuild } from "../helpers/sample-build.ts";

describe("decontamination", () => {
  const fixture = useSampleBuild("chuxin-decon-");

  it("removes the documents that quote an evaluation row, counts them per source, and pins the benchmarks in the lock", async () => {
    const dir = join(fixture.work, "decon");
    await mkdir(join(dir, "data"), { recursive: true });
    const humaneval = await parquetRows(join(sharedHub, "datasets/openai/openai_humaneval/openai_humaneval/test-00000-of-00001.parquet"));
    const arc = await parquetRows(join(sharedHub, "datasets/allenai/ai2_arc/ARC-Easy/test-00000-of-00001.parquet"));
    const clean = (i: number) => `Document ${i} is about something else entirely, with enough words to be a document of its own here.`;
    const web = [
      { text: `A blog post that pastes a solution:\n${humaneval[3]!.prompt}${humaneval[3]!.canonical_solution}` },
      { text: clean(1) },
      // An ARC question with its options, reformatted (case, punctuation, line breaks): still the same words.
      { text: `QUIZ TIME!!! ${String(arc[7]!.question).toUpperCase()} -- options: ${(arc[7]!.choices as { text: string[] }).text.join(" / ")}` },
      { text: clean(2) },
      // Shares only a few words with a benchmark row: kept.
      { text: `${String(arc[7]!.question).split(" ").slice(0, 6).join(" ")} and then a different sentence follows here.` },
    ];
    const other = [{ text: clean(3) }, { text: `${humaneval[10]!.prompt}` }];
    await writeFile(join(dir, "data", "web.jsonl"), web.map((r) => JSON.stringify(r)).join("\n") + "\n");
    await writeFile(join(dir, "data", "other.jsonl"), other.map((r) => JSON.stringify(r)).join("\n") + "\n");
    const recipe = join(dir, "recipe.yaml");
    await writeFile(
      recipe,
      `name: decon\nseed: 1\nsequence_length: 16\ntokenizer:\n  path: ${sharedTokenizer}\ndecontaminate:\n  tasks: [humaneval, arc_easy]\nsources:\n` +
        `  - {name: web, weight: 0.5, local: {files: ["data/web.jsonl"]}}\n  - {name: other, weight: 0.5, local: {files: ["data/other.jsonl"]}}\n`,
    );
    const out = join(dir, "out");
    const r = await runCli(["build", recipe, "--out", out], { env: fixture.env });
    assert.equal(r.code, 0, r.stderr);
    const manifest = JSON.parse(await readFile(join(out, "manifest.json"), "utf8"));
    assert.deepEqual(
      manifest.sources.map((s: { name: string; documents_skipped: Record<string, number> }) => [s.name, s.documents_skipped.contaminated]),
      [
        ["web", 2],
        ["other", 1],
      ],
    );
    assert.equal(manifest.decontamination.ngram, 13);
    assert.equal(manifest.decontamination.documents_removed, 3);
    assert.deepEqual(manifest.decontamination.tasks.map((t: { task: string; evaluation_rows: number }) => [t.task, t.evaluation_rows]), [
      ["humaneval", 164],
      ["arc_easy", 200],
    ]);
    const mixture = await readFile(join(out, "MIXTURE.md"), "utf8");
    assert.match(mixture, /Decontaminated against humaneval \(openai\/openai_humaneval@[0-9a-f]{12}, 164 rows\), arc_easy .*13-gram.*removed per source: web 2, other 1\./);
    const lock = JSON.parse(await readFile(join(out, "recipe.lock.json"), "utf8"));
    assert.deepEqual(lock.decontamination.map((t: { task: string }) => t.task), ["humaneval", "arc_easy"]);
    const shards = await readFile(join(out, manifest.shards[0].path));
    // The same bytes from the lock alone, without listing the benchmark repos again.
    const before = fixture.server.requests.length;
    const again = await runCli(["build", recipe, "--out", out, "--locked"], { env: fixture.env });
    assert.equal(again.code, 0, again.stderr);
    assert.ok(!fixture.server.requests.slice(before).some((q) => /\/tree\/|\/revision\//.test(q.url)));
    assert.deepEqual(await readFile(join(out, manifest.shards[0].path)), shards);
  });

  it("the default recipe trains on no benchmark row", async () => {
    const manifest = JSON.parse(await readFile(join(fixture.data, "manifest.json"), "utf8"));
    assert.ok(manifest.decontamination.tasks.some((t: { task: string }) => t.task === "humaneval"));
    assert.ok(!manifest.sources.some((s: { hf: { repo: string } | null }) => s.hf?.repo === "openai/openai_humaneval"));
  });
});
