#!/usr/bin/env node
// Runs the TypeScript sources through tsx's loader, so there is no build step between a clone and a run.
import { register } from "tsx/esm/api";

register();
// `chuxin-data inspect OUT | head` closes stdout early; that is not an error.
process.stdout.on("error", (error) => {
  if (error.code === "EPIPE") process.exit(process.exitCode ?? 0);
  throw error;
});
const { main } = await import("../src/cli/main.ts");
process.exitCode = await main(process.argv.slice(2));
