/** `build --memory`: DuckDB held to a budget (stated in the output) gives the same bytes; a bad size is a usage error. */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import { sha256File } from "../../src/util/hash.ts";
import { runCli } from "../helpers/cli.ts";
import { repoRoot } from "../helpers/paths.ts";
import { useSampleBuild } from "../helpers/sample-build.ts";

describe("build --memory", () => {
  const fixture = useSampleBuild("chuxin-build-memory-");
  let work: string, env: Record<string, string>, data: string;
  before(() => ({ work, env, data } = fixture));

  it("states the budget and writes the same shards, indexes and manifest at 64 MiB as with the default", async () => {
    const out = join(work, "small-budget");
    const r = await runCli(["build", join(repoRoot, "recipes", "sample.yaml"), "--out", out, "--memory", "64MiB"], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /memory budget: 64 MiB \(--memory\); DuckDB gets 64 MiB of it while it reads and dedups \(beyond that it spills to .*duckdb-tmp\) and 64 MiB from sampling on/);
    const manifest = JSON.parse(await readFile(join(data, "manifest.json"), "utf8"));
    for (const f of ["manifest.json", ...manifest.shards.flatMap((s: { path: string; doc_index: string }) => [s.path, s.doc_index])]) {
      assert.equal(await sha256File(join(out, f)), await sha256File(join(data, f)), f);
    }
  });

  it("says the default budget, and refuses a size it cannot use, naming the flag", async () => {
    const plain = await runCli(["plan", join(repoRoot, "recipes", "sample.yaml"), "--out", join(work, "plan")], { env });
    assert.equal(plain.code, 0, plain.stderr);
    assert.match(plain.stderr, /memory budget: [\d.]+ (GiB|MiB) \(half of this machine's [\d.]+ GiB; --memory to change\); DuckDB gets [\d.]+ (GiB|MiB) of it/);
    for (const [value, why] of [["lots", /expected a size such as 4GB/], ["1MB", /at least 64 MiB/]] as const) {
      const r = await runCli(["build", join(repoRoot, "recipes", "sample.yaml"), "--out", join(work, "bad"), "--memory", value], { env });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, why);
    }
  });
});
