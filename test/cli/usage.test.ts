import assert from "node:assert/strict";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { runCli } from "../helpers/cli.ts";
import { repoRoot } from "../helpers/paths.ts";

const recipe = join(repoRoot, "recipes", "sample.yaml");

/** Every command with arguments that would otherwise run it, so only the flag under test is wrong. */
const commands: Record<string, string[]> = {
  build: ["build", recipe, "--out", "out-build"],
  plan: ["plan", recipe, "--out", "out-plan"],
  validate: ["validate", recipe],
  schema: ["schema"],
  inspect: ["inspect", "some-build"],
  verify: ["verify", "some-build"],
  tokenize: ["tokenize", "input.txt"],
  train: ["train", "--data", "some-build", "--out", "run"],
  eval: ["eval", "--checkpoint", "run", "--data", "some-build"],
  generate: ["generate", "--checkpoint", "run", "--prompt", "hello"],
};

/** What each command cannot run without, and how the message names it. */
const required: [string, string[], RegExp][] = [
  ["build", ["build"], /'build' needs RECIPE: chuxin-data build RECIPE/],
  ["plan", ["plan"], /'plan' needs RECIPE/],
  ["validate", ["validate"], /'validate' needs RECIPE/],
  ["inspect", ["inspect"], /'inspect' needs OUT/],
  ["verify", ["verify"], /'verify' needs OUT/],
  ["train", ["train", "--out", "run"], /Missing required argument: data/],
  ["eval", ["eval", "--data", "some-build"], /Missing required argument: checkpoint/],
  ["generate", ["generate", "--checkpoint", "run"], /Missing required argument: prompt/],
];

describe("usage errors stop before any work (exit 2), naming the flag", () => {
  let cwd: string;
  before(async () => {
    cwd = await mkdtemp(join(tmpdir(), "chuxin-usage-"));
  });
  after(async () => rm(cwd, { recursive: true, force: true }));

  for (const [name, args] of Object.entries(commands)) {
    it(`${name} with a misspelt flag`, async () => {
      const r = await runCli([...args, "--stpes", "3"], { cwd, env: { HF_ENDPOINT: "http://127.0.0.1:9" } });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /unknown option --stpes; see 'chuxin-data --help'/);
      assert.deepEqual(await readdir(cwd), [], "nothing was written");
    });
  }

  for (const [name, args, message] of required) {
    it(`${name} without its required argument`, async () => {
      const r = await runCli(args, { cwd, env: { HF_ENDPOINT: "http://127.0.0.1:9" } });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, message);
      assert.doesNotMatch(r.stderr, /must be of type|Cannot read properties/);
      assert.deepEqual(await readdir(cwd), [], "nothing was written");
    });
  }

  it("an unknown command gets a did-you-mean", async () => {
    const r = await runCli(["biuld", recipe], { cwd });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /unknown command 'biuld'\. Did you mean build\?/);
  });
});
