import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { Manifest } from "./manifest.ts";
import { UsageError } from "../util/errors.ts";
import { sha256Hex } from "../util/hash.ts";
import { MANIFEST } from "./layout.ts";

/** Reads a build's manifest; its absence means the build never finished. */
export async function readManifest(outDir: string): Promise<Manifest> {
  const path = join(outDir, MANIFEST);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch {
    throw new UsageError(`${path}: no manifest; ${outDir} is not a finished chuxin-data build (run 'chuxin-data build' first)`);
  }
  let manifest: Manifest;
  try {
    manifest = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`${path}: not valid JSON (${(error as Error).message})`);
  }
  if (manifest.format !== "chuxin-data/1" || !Array.isArray(manifest.shards)) {
    throw new UsageError(`${path}: not a chuxin-data manifest (format 'chuxin-data/1')`);
  }
  return manifest;
}

/** A build's identity as a training run records it (chuxin_state.json's data_manifest_sha256). */
export function manifestHash(manifest: Manifest): string {
  return sha256Hex(JSON.stringify(manifest));
}
