#!/usr/bin/env node
// `npm test [-- FLAGS] [FILES]`: Node's test runner over the named test files, or every test/**/*.test.ts;
// flags (e.g. --test-name-pattern=x) go to the runner whatever their place. `--quick` leaves out the end-to-end
// tests (test/e2e/) and the native programs' checks (test/native/): the unit tests, in about a minute.
import { spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
/** Runner flags that take their value as the next argument when not written --flag=value. */
const TAKES_VALUE = new Set(["--test-name-pattern", "--test-skip-pattern", "--test-reporter", "--test-reporter-destination", "--test-concurrency", "--test-timeout", "--test-shard"]);

function testFiles(dir) {
  const out = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...testFiles(path));
    else if (entry.name.endsWith(".test.ts")) out.push(relative(root, path));
  }
  return out;
}

const flags = [];
const files = [];
let quick = false;
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  const arg = args[i];
  if (arg === "--quick") quick = true;
  else if (arg.startsWith("-")) {
    flags.push(arg);
    if (TAKES_VALUE.has(arg) && i + 1 < args.length) flags.push(args[++i]);
  } else files.push(arg);
}
const chosen = files.length > 0 ? files : testFiles(join(root, "test")).filter((f) => !quick || !/^test\/(e2e|native)\//.test(f)).sort();
const child = spawn(process.execPath, ["--import", "tsx", "--test", "--test-concurrency=1", ...flags, ...chosen], { cwd: root, stdio: "inherit" });
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => child.kill(signal));
child.on("close", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
