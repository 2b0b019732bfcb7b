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
  ["train", ["train", "--out", "run"], /train needs --data BUILD_FOLDER \(a build.s output\), or --plan PLAN\.yaml/],
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
      // The command's own help, and the flag it meant where it has one (build, plan have no --steps).
      assert.match(r.stderr, new RegExp(`unknown option --stpes${name === "train" ? " \\(did you mean --steps\\?\\)" : ""}; see 'chuxin-data ${name} --help'`));
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
    assert.match(r.stderr, /unknown command 'biuld'\. Did you mean build\? See 'chuxin-data --help'\n$/);
  });

  for (const [args, flag] of [
    [["build", recipe, "--worker", "2"], "--workers"],
    [["eval", "--checkpoint", "run", "--task", "arc_easy"], "--tasks"],
  ] as const) {
    it(`a misspelt ${flag} gets a did-you-mean`, async () => {
      const r = await runCli([...args], { cwd });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, new RegExp(`\\(did you mean ${flag}\\?\\); see 'chuxin-data ${args[0]} --help'`));
    });
  }

  /** Values no run could use: refused at once, naming the flag, the value given and the bound. */
  const outOfBounds: [string[], RegExp][] = [
    [["train", "--data", "d", "--nproc-per-node", "100000"], /--nproc-per-node 100000: must be a whole number of ranks from 1 to \d+/],
    [["train", "--data", "d", "--nproc-per-node", "0"], /--nproc-per-node 0: must be a whole number of ranks/],
    [["train", "--data", "d", "--micro-batch", "1000000000"], /--micro-batch 1000000000: Too big: expected number to be <=65536/],
    [["train", "--data", "d", "--micro-batch", "8192", "--context", "4096"], /--micro-batch 8192: 8192 × 4,096 tokens is over 16,777,216 tokens a micro-batch; use a smaller --micro-batch and reach the step's tokens with --global-batch-tokens/],
    [["train", "--data", "d", "--steps", "ten"], /--steps "ten": .*expected number/],
    [["train", "--data", "d", "--dist-timeout", "1e9"], /--dist-timeout 1000000000: Too big/],
    [["build", recipe, "--workers", "100000"], /--workers 100000: expected a whole number from 1 to \d+ \(at most twice this machine's \d+ cores/],
    [["build", recipe, "--workers", "0"], /--workers 0: expected a whole number from 1/],
    [["build", recipe, "--workers", "-3"], /--workers -3: expected a whole number from 1/],
    [["plan", recipe, "--workers", "0"], /--workers 0: expected a whole number from 1/],
    [["build", recipe, "--max-shard-bytes", "-1"], /--max-shard-bytes -1: expected a whole number from 1,000,000 to 1,099,511,627,776/],
    [["build", recipe, "--max-shard-bytes", "1"], /--max-shard-bytes 1: expected a whole number from 1,000,000/],
    [["generate", "--checkpoint", "run", "--prompt", "x", "--max-tokens", "-1"], /--max-tokens -1: expected a whole number from 1 to/],
    [["generate", "--checkpoint", "run", "--prompt", "x", "--top-p", "0"], /--top-p 0: expected a number above 0 up to 1/],
    [["generate", "--checkpoint", "run", "--prompt", "x", "--temperature", "hot"], /--temperature \(not a number\): expected a number from 0 to 100/],
    [["eval", "--checkpoint", "run", "--tasks", "arc_easy", "--batch-tokens", "0"], /--batch-tokens 0: expected a whole number from 1 to 16,777,216/],
    [["eval", "--checkpoint", "run", "--threads", "0"], /--threads 0: expected a whole number from 1 to 4,096/],
    [["tokenize", "in.txt", "--batch", "0"], /--batch 0: expected a whole number from 1 to 1,000,000/],
  ];
  for (const [args, message] of outOfBounds) {
    it(`refuses ${args.slice(-2).join(" ")} (${args[0]}) before any work`, async () => {
      const started = Date.now();
      const r = await runCli([...args], { cwd, env: { HF_ENDPOINT: "http://127.0.0.1:9" } });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, message);
      assert.ok(Date.now() - started < 20_000, "at once");
      assert.deepEqual(await readdir(cwd), [], "nothing was written");
    });
  }
});
