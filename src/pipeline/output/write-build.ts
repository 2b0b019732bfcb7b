import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { LoadedRecipe } from "../../recipe/load.ts";
import { BUILD_TOKENIZER, LOCK, MANIFEST } from "../../shards/layout.ts";
import type { Manifest } from "../../shards/manifest.ts";
import { writeFileAtomic, writeJsonAtomic } from "../../util/atomic.ts";
import type { BuildDb } from "../../util/duckdb.ts";
import { RuntimeFailure } from "../../util/errors.ts";
import { sha256Hex } from "../../util/hash.ts";
import { formatSize } from "../../util/size.ts";
import type { DecontaminationReport } from "../stages/decontaminate.ts";
import type { BuildLock } from "../lock.ts";
import { buildManifest, datasetCard, mixtureMarkdown, type ManifestSource, type ManifestTokenizer, type NearDuplicateReport, type SourceStats } from "./manifest.ts";
import { freeBytes, publishStaged, shardBytes } from "./output-folder.ts";
import { pack, type PackResult } from "../stages/pack.ts";
import type { StreamOptions } from "../stages/pack-stream.ts";
import { runStage, type ProgressSink } from "../progress.ts";
import { layOutStream, writePlanNames } from "../mixture/plan-tables.ts";
import type { SourcePlan } from "../mixture/sample.ts";
import type { TokenReader } from "../stages/tokenize.ts";

/** Everything the last stages need, whether one machine read the inputs (build.ts) or partitions did (merge.ts). */
export interface SelectedBuild {
  lock: BuildLock;
  tokenizer: ManifestTokenizer;
  /** the tokenizer.json to copy into the build (its sha256 is the tokenizer's) */
  tokenizerFile: string;
  sources: ManifestSource[];
  stats: SourceStats[];
  plans: SourcePlan[];
  store: TokenReader;
  decontamination?: DecontaminationReport;
  nearDuplicates?: NearDuplicateReport;
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
 * Refuses, with the numbers, a mixture that fills no sequence or whose shards (`copies` of their size, for a merge's
 * bins beside them) do not fit the free space at `dir` (the shards' size is known exactly once the mixture is planned).
 */
export async function checkPackable(tokens: number, sequenceLength: number, maxShardBytes: number, dir: string, copies = 1, what = "the shards"): Promise<void> {
  if (tokens < sequenceLength) {
    throw new RuntimeFailure(
      `the mixture holds ${tokens} tokens, fewer than one sequence of sequence_length ${sequenceLength}, so the build would be empty; ` +
        `lower sequence_length, raise target_tokens or max_epochs, or add data`,
    );
  }
  const need = copies * shardBytes(tokens, sequenceLength, maxShardBytes);
  const free = await freeBytes(dir);
  if (free !== undefined && need > free) {
    throw new RuntimeFailure(
      `${what} need ${formatSize(need)} (${Math.floor(tokens / sequenceLength).toLocaleString("en-US")} sequences of ${sequenceLength} tokens) and ${dir} has ${formatSize(free)} free; ` +
        `free space there, build to another --out, or lower target_tokens`,
    );
  }
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
  await checkPackable(plans.reduce((a, p) => a + p.tokensSelected, 0), recipe.sequence_length, out.maxShardBytes, out.staging);
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
    // The documents selected less those wholly in the dropped tail: the "written" of the mixture table.
    (p) => ({
      done: p.totalSequences,
      unit: `sequences (${p.perSource.reduce((a, s) => a + s.documentsWritten, 0).toLocaleString("en-US")} documents; the last ${p.tailTokensDropped.toLocaleString("en-US")} tokens, short of a sequence, dropped)`,
    }),
  );
  return writeManifestFiles(loaded, selected, packed, out, sink);
}

/** The manifest stage: the lock, MIXTURE.md, card and manifest beside the packed shards in staging, then the whole build moved into `outDir`. */
export async function writeManifestFiles(
  loaded: LoadedRecipe,
  selected: Omit<SelectedBuild, "store">,
  packed: PackResult,
  out: Pick<BuildTarget, "outDir" | "staging" | "recipeFile">,
  sink: ProgressSink,
): Promise<Manifest> {
  const { recipe } = loaded;
  const { plans } = selected;
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
      nearDuplicates: selected.nearDuplicates,
    });
    for (const warning of manifest.warnings ?? []) sink({ type: "note", stage: "manifest", message: `warning: ${warning}` });
    for (const line of skippedRowLines(manifest)) sink({ type: "note", stage: "manifest", message: line });
    await copyTokenizer(selected.tokenizerFile, selected.tokenizer.sha256, join(out.staging, BUILD_TOKENIZER));
    await writeJsonAtomic(join(out.staging, LOCK), selected.lock);
    await writeFileAtomic(join(out.staging, "MIXTURE.md"), mixtureMarkdown(manifest));
    await writeFileAtomic(join(out.staging, "README.md"), datasetCard(manifest));
    await writeJsonAtomic(join(out.staging, MANIFEST), manifest);
    await publishStaged(out.staging, out.outDir);
    return manifest;
  });
}

/** The build's tokenizer.json, copied from the file the build tokenised with, refused if it is not that file. */
async function copyTokenizer(from: string, sha256: string, to: string): Promise<void> {
  const bytes = await readFile(from).catch((error: NodeJS.ErrnoException) => {
    throw new RuntimeFailure(`${from}: cannot read the tokenizer to copy into the build (${error.code ?? error.message})`);
  });
  if (sha256Hex(bytes) !== sha256) throw new RuntimeFailure(`${from}: sha256 ${sha256Hex(bytes)} is not the tokenizer the build used (${sha256}); rerun the build (or the partition it came from)`);
  await writeFileAtomic(to, bytes);
}

/** Per source with skipped rows: how many, and the first few by file and row (the manifest names up to 100 a reason). */
export function skippedRowLines(m: Manifest, shown = 5): string[] {
  return m.sources.flatMap((s) => {
    const total = Object.values(s.documents_skipped).reduce((a, b) => a + b, 0);
    const rows = Object.entries(s.skipped_rows ?? {}).flatMap(([reason, list]) => list.map((r) => ({ ...r, reason })));
    if (total === 0 || rows.length === 0) return [];
    const order = new Map(s.files.map((f, i) => [f.path, i]));
    rows.sort((a, b) => order.get(a.file)! - order.get(b.file)! || a.row - b.row);
    const first = rows.slice(0, shown).map((r) => `${r.file} row ${r.row} (${r.reason})`);
    return [`source '${s.name}': ${total.toLocaleString("en-US")} row(s) skipped; first: ${first.join(", ")}${total > shown ? ", …" : ""} (rows count from 0; manifest.json's skipped_rows lists the first 100 of each reason)`];
  });
}
