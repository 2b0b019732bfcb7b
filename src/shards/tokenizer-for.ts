import { stat } from "node:fs/promises";
import { join } from "node:path";
import { HubClient } from "../hub/client.ts";
import { hubEnv } from "../hub/env.ts";
import type { Manifest } from "./manifest.ts";
import { loadTokenizer, type TextTokenizer } from "../tokenizer/load.ts";
import { RuntimeFailure } from "../util/errors.ts";

/**
 * The exact tokenizer a build used: the build's own copy (`buildDir`/tokenizer.json, what a build writes now), else,
 * for older builds, the HF cache, fetched at the recorded commit if absent.
 */
export async function tokenizerForManifest(m: Manifest, buildDir?: string): Promise<TextTokenizer> {
  const path = await tokenizerPathForManifest(m, buildDir);
  const tokenizer = await loadTokenizer(path);
  if (tokenizer.sha256 !== m.tokenizer.sha256) {
    throw new RuntimeFailure(`${path}: sha256 ${tokenizer.sha256} is not the build's tokenizer (${m.tokenizer.sha256})`);
  }
  return tokenizer;
}

export async function tokenizerPathForManifest(m: Manifest, buildDir?: string): Promise<string> {
  if (m.tokenizer.in_build) {
    if (!buildDir) throw new RuntimeFailure(`the build's tokenizer is its ${m.tokenizer.in_build}, and no build folder was given`);
    const copy = join(buildDir, m.tokenizer.in_build);
    if (!(await stat(copy).then((s) => s.isFile(), () => false))) {
      throw new RuntimeFailure(`${copy} is missing: the build's manifest records its tokenizer there (sha256 ${m.tokenizer.sha256}); copy the whole build folder, or rebuild`);
    }
    return copy;
  }
  let path: string;
  if (m.tokenizer.path) {
    path = m.tokenizer.path;
  } else {
    const client = new HubClient(hubEnv());
    const repo = { type: "model" as const, id: m.tokenizer.repo! };
    path = client.snapshotFile(repo, m.tokenizer.commit!, m.tokenizer.file);
    const present = await stat(path).then(() => true, () => false);
    if (!present) path = (await client.fetchFile(repo, m.tokenizer.commit!, m.tokenizer.file, m.tokenizer.sha256)).localPath;
  }
  return path;
}
