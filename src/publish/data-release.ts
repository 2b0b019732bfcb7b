/**
 * A build as a dataset repo: the recipe, recipe.lock.json, manifest.json, MIXTURE.md and a dataset card whose
 * YAML front matter the Hub reads (license, languages, size category, source datasets, the mixture), and with
 * shards the .npy files and their document indexes.
 */
import { existsSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { datasetCard } from "../pipeline/output/manifest.ts";
import { readManifest } from "../shards/manifest-file.ts";
import type { Manifest } from "../shards/manifest.ts";
import { BUILD_TOKENIZER, docIndexName, LOCK, MANIFEST, shardName } from "../shards/layout.ts";
import { sha256File } from "../util/hash.ts";
import { UsageError } from "../util/errors.ts";
import { bytesEntry, fileEntry, type ReleaseBranch } from "./release.ts";

export interface DataReleaseOptions {
  outDir: string;
  /** the recipe file; default: the one the manifest names, in the working folder or recipes/ */
  recipe?: string;
  withShards: boolean;
  branch: string;
  license?: string;
  languages?: string[];
}

async function findRecipe(m: Manifest, given: string | undefined): Promise<string> {
  const candidates = given ? [resolve(given)] : [resolve(m.recipe.path), resolve("recipes", basename(m.recipe.path))];
  for (const path of candidates) {
    if (!existsSync(path)) continue;
    const sha = await sha256File(path);
    if (sha === m.recipe.sha256) return path;
    if (given) throw new UsageError(`--recipe ${given}: sha256 ${sha} is not the recipe this build was made from (${m.recipe.sha256}); pass the build's own recipe`);
  }
  throw new UsageError(`cannot find the recipe this build was made from (${m.recipe.path}, sha256 ${m.recipe.sha256.slice(0, 12)}…); pass it with --recipe FILE`);
}

/** The card: the build's own card with this release's license and languages, and how to fetch what rebuilds it. */
function card(m: Manifest, o: DataReleaseOptions): string {
  const own = datasetCard(m, { license: o.license, languages: o.languages });
  const reproduce = [
    "## Reproduce",
    "",
    "```sh",
    `huggingface-cli download --repo-type dataset REPO ${basename(m.recipe.path)} ${LOCK} --local-dir .`,
    `npx chuxin-data build ${basename(m.recipe.path)} --locked   # the same shards, byte for byte`,
    "```",
    "",
    o.withShards ? "The shards and their document indexes are in this repo (`shard-NNNNN.npy`, `shard-NNNNN.docs.parquet`)." : "The shards are not uploaded; the recipe and lock rebuild them.",
  ].join("\n");
  return `${own.trimEnd()}\n\n${reproduce}\n`;
}

export async function dataRelease(o: DataReleaseOptions): Promise<{ manifest: Manifest; branches: ReleaseBranch[]; warnings: string[] }> {
  const manifest = await readManifest(o.outDir);
  const recipe = await findRecipe(manifest, o.recipe);
  const files = [
    await fileEntry(basename(manifest.recipe.path), recipe),
    await fileEntry(LOCK, join(o.outDir, LOCK)),
    await fileEntry(MANIFEST, join(o.outDir, MANIFEST)),
    await fileEntry("MIXTURE.md", join(o.outDir, "MIXTURE.md")),
  ];
  // The build's own tokenizer, under the one name a build writes (not a name the manifest could be edited to).
  if (manifest.tokenizer.in_build) files.push(await fileEntry(BUILD_TOKENIZER, join(o.outDir, BUILD_TOKENIZER)));
  if (o.withShards) {
    for (const [i, shard] of manifest.shards.entries()) {
      // Only the names a build writes: a hand-edited manifest must not make publish read (and upload) other files.
      if (shard.path !== shardName(i) || shard.doc_index !== docIndexName(i)) {
        throw new UsageError(`${join(o.outDir, MANIFEST)}: shard ${i} is listed as ${shard.path} / ${shard.doc_index}, not ${shardName(i)} / ${docIndexName(i)}; rebuild the output folder`);
      }
      files.push(await fileEntry(shard.path, join(o.outDir, shard.path)), await fileEntry(shard.doc_index, join(o.outDir, shard.doc_index)));
    }
  }
  return {
    manifest,
    branches: [{ branch: o.branch, files, card: bytesEntry("README.md", card(manifest, o)), title: `chuxin-data: ${manifest.recipe.name} (${manifest.total_tokens.toLocaleString("en-US")} tokens)` }],
    warnings: o.license || manifest.license ? [] : ["the card names no license (--license, or license: in the recipe, e.g. apache-2.0): the Hub shows the dataset as unlicensed, which many users cannot take"],
  };
}
