import { stat } from "node:fs/promises";
import { join } from "node:path";
import { HubClient } from "../hub/client.ts";
import { hubEnv } from "../hub/env.ts";
import type { Manifest } from "./manifest.ts";
import { loadTokenizer, type TextTokenizer } from "../tokenizer/load.ts";
import { RuntimeFailure } from "../util/errors.ts";

/** The exact tokenizer a build used: from the HF cache, fetched at the recorded commit if absent. */
export async function tokenizerForManifest(m: Manifest, recipeDir?: string): Promise<TextTokenizer> {
  const path = await tokenizerPathForManifest(m, recipeDir);
  const tokenizer = await loadTokenizer(path);
  if (tokenizer.sha256 !== m.tokenizer.sha256) {
    throw new RuntimeFailure(`${path}: sha256 ${tokenizer.sha256} is not the build's tokenizer (${m.tokenizer.sha256})`);
  }
  return tokenizer;
}

export async function tokenizerPathForManifest(m: Manifest, recipeDir?: string): Promise<string> {
  let path: string;
  if (m.tokenizer.path) {
    path = recipeDir ? join(recipeDir, m.tokenizer.path) : m.tokenizer.path;
  } else {
    const client = new HubClient(hubEnv());
    const repo = { type: "model" as const, id: m.tokenizer.repo! };
    path = client.snapshotFile(repo, m.tokenizer.commit!, m.tokenizer.file);
    const present = await stat(path).then(() => true, () => false);
    if (!present) path = (await client.fetchFile(repo, m.tokenizer.commit!, m.tokenizer.file, m.tokenizer.sha256)).localPath;
  }
  return path;
}
