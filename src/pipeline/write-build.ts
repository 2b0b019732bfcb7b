import { join } from "node:path";
import type { LoadedRecipe } from "../recipe/load.ts";
import { LOCK, MANIFEST } from "../shards/layout.ts";
import type { Manifest } from "../shards/manifest.ts";
import { writeFileAtomic, writeJsonAtomic } from "../util/atomic.ts";
import type { BuildDb } from "../util/duckdb.ts";
import { RuntimeFailure } from "../util/errors.ts";
import { formatSize } from "../util/size.ts";
import type { DecontaminationReport } from "./decontaminate.ts";
import type { BuildLock } from "./lock.ts";
import { buildManifest, datasetCard, mixtureMarkdown, type ManifestSource, type ManifestTokenizer, type SourceStats } from "./manifest.ts";
import { freeBytes, publishStaged, shardBytes } from "./output-folder.ts";
import { pack } from "./pack.ts";
import type { StreamOptions } from "./pack-stream.ts";
import { runStage, type ProgressSink } from "./progress.ts";
import { layOutStream, writePlanNames } from "./plan-tables.ts";
import type { SourcePlan } from "./sample.ts";
import type { TokenReader } from "./tokenize.ts";

/** Everything the last stages need, whether one machine read the inputs (build.ts) or partitions did (merge.ts). */
export interface SelectedBuild {
  lock: BuildLock;
  tokenizer: ManifestTokenizer;
  sources: ManifestSource[];
  stats: SourceStats[];
  plans: SourcePlan[];
  store: TokenReader;
  decontamination?: DecontaminationReport;
}

/** Where a build goes: its folder, the staging folder inside it, the shards' size limit, and the recipe's file name for the manifest. */
export interface BuildTarget {
  outDir: string;
  staging: string;
  maxShardBytes: number;
  recipeFile: string;
  /** pack's bin folder and buffers */
  stream: StreamOptions;
}

/**
 * Packs the selected mixture into the staging folder, writes the lock, manifest, MIXTURE.md and card, and moves the
 * whole build into `outDir`. Refuses first, with the numbers, when the shards do not fit the free space.
 */
export async function writeBuild(
  db: BuildDb,
  loaded: LoadedRecipe,
  selected: SelectedBuild,
  out: BuildTarget,
  sink: ProgressSink,
): Promise<Manifest> {
  const { recipe } = loaded;
  const { plans, store } = selected;
  const tokens = plans.reduce((a, p) => a + p.tokensSelected, 0);
  if (tokens < recipe.sequence_length) {
    throw new RuntimeFailure(
      `the mixture holds ${tokens} tokens, fewer than one sequence of sequence_length ${recipe.sequence_length}, so the build would be empty; ` +
        `lower sequence_length, raise target_tokens or max_epochs, or add data`,
    );
  }
  // The shards' size is known exactly now: refuse before writing them when the disk cannot hold them.
  const need = shardBytes(tokens, recipe.sequence_length, out.maxShardBytes);
  const free = await freeBytes(out.staging);
  if (free !== undefined && need > free) {
    throw new RuntimeFailure(
      `the shards need ${formatSize(need)} (${Math.floor(tokens / recipe.sequence_length).toLocaleString("en-US")} sequences of ${recipe.sequence_length} tokens) and ${out.staging} has ${formatSize(free)} free; ` +
        `free space there, build to another --out, or lower target_tokens`,
    );
  }
  const packed = await runStage(
    sink,
    "pack",
    async () => {
      const streamTokens = await layOutStream(db, plans);
      await writePlanNames(db, selected.sources.map((s) => ({ name: s.spec.name, files: s.files.map((f) => f.path) })));
      return pack(db, plans.length, streamTokens, store, {
        outDir: out.staging,
        sequenceLength: recipe.sequence_length,
        maxShardBytes: out.maxShardBytes,
        stream: out.stream,
        eosId: selected.tokenizer.eosId,
        bosId: recipe.tokenizer.add_bos ? selected.tokenizer.bosId : undefined,
      }, sink);
    },
    (p) => ({ done: p.totalSequences, unit: "sequences" }),
  );
  return await runStage(sink, "manifest", async () => {
    const manifest = buildManifest({
      recipe,
      recipeFile: out.recipeFile,
      recipeSha256: loaded.sha256,
      tokenizer: selected.tokenizer,
      sources: selected.sources,
      stats: selected.stats,
      plans,
      packed,
      decontamination: selected.decontamination,
    });
    for (const warning of manifest.warnings ?? []) sink({ type: "note", stage: "manifest", message: `warning: ${warning}` });
    await writeJsonAtomic(join(out.staging, LOCK), selected.lock);
    await writeFileAtomic(join(out.staging, "MIXTURE.md"), mixtureMarkdown(manifest));
    await writeFileAtomic(join(out.staging, "README.md"), datasetCard(manifest));
    await writeJsonAtomic(join(out.staging, MANIFEST), manifest);
    await publishStaged(out.staging, out.outDir);
    return manifest;
  });
}
