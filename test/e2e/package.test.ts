/**
 * The package as users get it: `npm pack`, installed into an empty project from the registry (its
 * dependencies) and the tarball (the addon compiled at install, nothing else), then the README's main
 * command run from there against the loopback Hub.
 */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { spawnAsync } from "../helpers/cli.ts";
import { HubServer } from "../helpers/hub-server.ts";
import { repoRoot, sharedHub } from "../helpers/paths.ts";

describe("the packed package", { timeout: 15 * 60_000 }, () => {
  let work: string;
  let tarball: string;
  before(async () => {
    work = await mkdtemp(join(tmpdir(), "chuxin-package-"));
    assert.ok(existsSync(join(repoRoot, "dist", ".built")), "npm test builds dist/ first (pretest)");
    // --ignore-scripts: prepack would rebuild dist/ under the running suite; pretest has just built it.
    const name = execFileSync("npm", ["pack", "--ignore-scripts", "--silent", "--pack-destination", work], { cwd: repoRoot, encoding: "utf8" }).trim().split("\n").pop()!;
    tarball = join(work, name);
  });
  after(async () => rm(work, { recursive: true, force: true }));

  it("holds what users run, not tests, benchmarks or GPU logs", () => {
    const files = execFileSync("tar", ["-tzf", tarball], { encoding: "utf8" }).split("\n").filter(Boolean);
    for (const must of ["package/bin/chuxin-data.js", "package/dist/cli/main.js", "package/dist/.built", "package/native/CMakeLists.txt", "package/native/include/chuxin.h", "package/recipes/sample.yaml", "package/README.md"]) {
      assert.ok(files.includes(must), must);
    }
    for (const file of files) assert.doesNotMatch(file, /^package\/(test|bench|src|native\/test|native\/build)\//, file);
  });

  it("installs (building only the addon) and runs the README's main command", async () => {
    const project = join(work, "project");
    execFileSync("mkdir", ["-p", project]);
    await writeFile(join(project, "package.json"), JSON.stringify({ name: "user-project", version: "1.0.0", private: true }));
    const install = spawnSync("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", tarball], {
      cwd: project,
      encoding: "utf8",
      env: { ...process.env, CHUXIN_CUDA: "OFF" },
    });
    assert.equal(install.status, 0, install.stdout + install.stderr);
    const build = join(project, "node_modules", "chuxin-data", "native", "build");
    const built = await readdir(build);
    assert.ok(!built.some((n) => /_test|_check|_throughput/.test(n)), `only the addon is built: ${built.join(", ")}`);
    assert.ok(existsSync(join(build, "Release", "chuxin.node")));

    const started = performance.now();
    const help = spawnSync("npx", ["--no-install", "chuxin-data", "--help"], { cwd: project, encoding: "utf8" });
    assert.equal(help.status, 0, help.stderr);
    assert.match(help.stdout, /chuxin-data build <recipe>/);
    assert.ok(performance.now() - started < 30_000);

    const server = await new HubServer({ root: sharedHub }).start();
    try {
      const env = { ...process.env, CI: "true", HF_ENDPOINT: server.url, HF_HOME: join(work, "hf") };
      const r = await spawnAsync("npx", ["--no-install", "chuxin-data", "build", "node_modules/chuxin-data/recipes/sample.yaml"], { cwd: project, env });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /wrote \d+ sequences/);
      const v = await spawnAsync("npx", ["--no-install", "chuxin-data", "verify", "out/sample"], { cwd: project, env });
      assert.equal(v.code, 0, v.stderr);
    } finally {
      await server.stop();
    }
  });
});
