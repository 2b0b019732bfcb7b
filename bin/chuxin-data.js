#!/usr/bin/env node
// Runs the compiled JavaScript in dist/ (what the package ships, built at `prepare`/`prepack`). In a checkout
// whose src/ is newer than dist/ (an edit since the last build), it runs the TypeScript sources through tsx
// instead, so a developer never runs stale code. CHUXIN_FROM_SOURCE=1 forces the sources.
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const stamp = join(root, "dist", ".built");

function newestSource(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestSource(path) : statSync(path).mtimeMs);
  }
  return newest;
}

const compiled =
  !process.env.CHUXIN_FROM_SOURCE &&
  existsSync(stamp) &&
  (!existsSync(join(root, "src")) || newestSource(join(root, "src")) <= statSync(stamp).mtimeMs);

// `chuxin-data inspect OUT | head` closes stdout early; that is not an error.
process.stdout.on("error", (error) => {
  if (error.code === "EPIPE") process.exit(process.exitCode ?? 0);
  throw error;
});
let main;
if (compiled) {
  ({ main } = await import("../dist/cli/main.js"));
} else {
  const { register } = await import("tsx/esm/api");
  register();
  ({ main } = await import("../src/cli/main.ts"));
}
process.exitCode = await main(process.argv.slice(2));
