/** The test script's arguments reach Node's runner (npm test -- --test-name-pattern=x, or files), wherever they stand. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { spawnAsync } from "../helpers/cli.ts";
import { repoRoot } from "../helpers/paths.ts";

// Without the outer runner's NODE_TEST_CONTEXT, which would make the inner one report to it instead of printing TAP.
const { NODE_TEST_CONTEXT: _outer, ...env } = process.env;
const runTests = (args: string[]) => spawnAsync(process.execPath, [join(repoRoot, "scripts", "run-tests.mjs"), "--test-reporter=tap", ...args], { cwd: repoRoot, env });

describe("scripts/run-tests.mjs (npm test)", () => {
  for (const args of [
    ["--test-name-pattern=h:mm:ss", "test/cli/train-format.test.ts"],
    ["test/cli/train-format.test.ts", "--test-name-pattern", "h:mm:ss"],
  ]) {
    it(`runs the named file with the runner's flags: ${args.join(" ")}`, async () => {
      const r = await runTests(args);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /# tests 1\n/);
      assert.match(r.stdout, /ok 1 - prints the ETA as h:mm:ss/);
    });
  }
  it("a pattern that matches nothing runs nothing, instead of being taken for a file", async () => {
    const r = await runTests(["--test-name-pattern=no such test anywhere", "test/cli/train-format.test.ts"]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /# pass 0\n/);
  });
});
