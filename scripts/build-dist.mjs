#!/usr/bin/env node
// Compiles src/ into dist/ without a moment in which dist/ is missing or half-written: tsc writes a fresh folder
// beside it, which is swapped in by two renames (a chuxin-data started meanwhile runs the old dist/ or, in the
// microseconds between the renames, the sources through tsx; never a mix).
import { execFileSync } from "node:child_process";
import { existsSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const next = join(root, "dist.next.tmp");
const old = join(root, "dist.old.tmp");
const dist = join(root, "dist");
rmSync(next, { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
try {
  execFileSync(process.execPath, [tsc, "-p", join(root, "tsconfig.build.json"), "--outDir", next], { stdio: "inherit" });
} catch {
  rmSync(next, { recursive: true, force: true });
  process.exit(1);
}
writeFileSync(join(next, ".built"), "");
rmSync(old, { recursive: true, force: true });
if (existsSync(dist)) renameSync(dist, old);
renameSync(next, dist);
rmSync(old, { recursive: true, force: true });
