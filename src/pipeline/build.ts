import { mkdir, readdir, readFile, rename, rm, stat, statfs } from "node:fs/promises";
import { cpus, totalmem } from "node:os";
import { basename, join } from "node:path";
import { HubClient } from "../hub/client.ts";
import { hubEnv, type HubEnv } from "../hub/env.ts";
import { loadRecipe, type LoadedRecipe } from "../recipe/load.ts";
import { DEFAULT_MAX_SHARD_BYTES, LOCK, MANIFEST, WORK_DIR } from "../shards/layout.ts";
import { parseTokenizerJson, type TextTokenizer } from "../tokenizer/load.ts";
import { nativeTokenizer, type BatchTokenizer } from "../tokenizer/native.ts";
import { writeFileAtomic, writeJsonAtomic } from "../util/atomic.ts";
import { RuntimeFailure, UsageError } from "../util/errors.ts";
import { LOCK_FILE, lockFolder, type FolderLock } from "../util/folder-lock.ts";
import { BuildDb } from "../util/duckdb.ts";
import { formatSize } from "../util/size.ts";
import { decontaminate, type DecontaminationReport } from "./decontaminate.ts";
import { dedup } from "./dedup.ts";
import { SKIP_REASONS, tokenFilter } from "./filters.ts";
import { ingest } from "./ingest.ts";
import { readLock } from "./lock.ts";
import type { Manifest } from "../shards/manifest.ts";
import { buildManifest, datasetCard, mixtureMarkdown, type SourceStats } from "./manifest.ts";
import { pack, type Provenance } from "./pack.ts";
import { runStage, type ProgressSink } from "./progress.ts";
import { resolveInputs } from "./resolve.ts";
import { duplicatesBySource, fileRows, rowsBySkipReason, uniqueDocProvenance } from "./schema.ts";
import { interleave, planMixture, type SourceDocs, type SourcePlan } from "./sample.ts";
import { tokenizeDocuments } from "./tokenize.ts";

export interface BuildOptions {
  recipePath: string;
  outDir: string;
  workers?: number;
  locked?: boolean;
  lockPath?: string;
  maxShardBytes?: number;
  /** "native" (default; falls back to "js" with a note when the tokenizer.json uses unsupported features). */
  tokenizerImpl?: "native" | "js";
  /** Build into a folder that holds files chuxin-data did not write (its README.md is replaced). */
  force?: boolean;
  /** DuckDB's memory budget in bytes (it spills to OUT/.work/duckdb-tmp beyond it); default: half of this machine's memory. */
  memoryBytes?: number;
  env?: HubEnv;
  sink: ProgressSink;
}

export interface PlanResult {
  loaded: LoadedRecipe;
  plans: SourcePlan[];
  stats: SourceStats[];
  /** Bytes the shards will take (exact), what OUT/.work holds after planning (the database and token chunks a build reuses), and free space there. */
  disk: { shards: number; work: number; free: number | undefined };
}

async function prepare(options: BuildOptions, db: BuildDb, loaded: LoadedRecipe) {
  let decontamination: DecontaminationReport | undefined;
  const { recipe } = loaded;
  const { sink } = options;
  const env = options.env ?? hubEnv();
  const client = new HubClient(env, {
    onRetry: (what, attempt, error) => sink({ type: "retry", stage: "download", what, attempt, error }),
    onBytes: (path, received, total) => sink({ type: "download_progress", stage: "download", path, received, total }),
    onNote: (message) => sink({ type: "note", stage: "download", message }),
  });
  const lock = options.locked ? await readLock(options.lockPath ?? join(options.outDir, LOCK)) : undefined;
  const resolution = await runStage(sink, "download", () => resolveInputs(client, recipe, loaded.path, lock, sink), (r) => ({
    done: r.sources.reduce((a, s) => a + s.files.length, 0) + 1,
    unit: "files",
  }));
  const tokenizerJson = await readFile(resolution.tokenizer.localPath, "utf8");
  const { json, info: tokenizer } = parseTokenizerJson(tokenizerJson, resolution.tokenizer.localPath);
  let native: (TextTokenizer & BatchTokenizer) | undefined;
  if ((options.tokenizerImpl ?? "native") === "native") {
    try {
      native = nativeTokenizer(json, tokenizer, options.workers ?? cpus().length);
    } catch (error) {
      sink({ type: "note", stage: "tokenize", message: `native tokenizer unavailable (${(error as Error).message}); using @huggingface/tokenizers` });
    }
  }
  const impl = native ? "native" : "js";

  await runStage(sink, "ingest", () => ingest(db, recipe, resolution.sources, sink), (n) => ({ done: n, unit: "rows" }));
  if (recipe.decontaminate) {
    const result = await runStage(sink, "decontaminate", () => decontaminate(db, client, recipe, loaded.path, lock?.decontamination, sink), (r) => ({
      done: r!.report.documents_removed,
      unit: "documents removed",
    }));
    resolution.lock.decontamination = result!.lock;
    decontamination = result!.report;
  }
  await runStage(sink, "dedup", () => dedup(db, recipe), (r) => ({ done: r.removed, unit: "duplicates removed" }));
  const tokenized = await runStage(
    sink,
    "tokenize",
    () =>
      tokenizeDocuments(
        db,
        {
          workers: options.workers,
          tokenizerJson,
          tokenizerPath: resolution.tokenizer.localPath,
          tokenizerSha256: tokenizer.sha256,
          cacheDir: join(options.outDir, WORK_DIR, "tokens"),
          native,
          impl,
        },
        sink,
      ),
    (r) => ({ done: r.tokens, unit: "tokens", reused: r.reusedChunks > 0 }),
  );

  // Provenance of every unique document, by ord.
  const docs = await uniqueDocProvenance(db);
  const prov: Provenance = {
    sourceIdx: Int32Array.from(docs, (d) => d.source_idx),
    fileIdx: Int32Array.from(docs, (d) => d.file_idx),
    rowIdx: Float64Array.from(docs, (d) => Number(d.row_idx)),
    hashes: docs.map((d) => d.doc_hash),
    files: resolution.sources.map((s) => s.files.map((f) => f.path)),
  };

  // Stats per source, and the token-length filter.
  const specials = 1 + (recipe.tokenizer.add_bos ? 1 : 0);
  const skipByTokens = tokenFilter(recipe.filters);
  const stats: SourceStats[] = resolution.sources.map(() => ({
    documentsRead: 0,
    skipped: Object.fromEntries(SKIP_REASONS.map((r) => [r, 0])),
    duplicatesWithin: 0,
    duplicatesAcross: 0,
    fileRows: [],
  }));
  for (const r of await rowsBySkipReason(db)) {
    stats[r.s]!.documentsRead += Number(r.n);
    if (r.reason) stats[r.s]!.skipped[r.reason] = Number(r.n);
  }
  for (const r of await duplicatesBySource(db)) {
    if (r.within) stats[r.s]!.duplicatesWithin = Number(r.n);
    else stats[r.s]!.duplicatesAcross = Number(r.n);
  }
  for (const r of await fileRows(db)) {
    stats[r.s]!.fileRows[r.f] = Number(r.rows);
  }
  const sourceDocs: SourceDocs[] = resolution.sources.map((s) => ({
    name: s.spec.name,
    weight: s.spec.weight,
    maxEpochs: s.spec.max_epochs ?? recipe.max_epochs,
    ords: [],
    hashes: [],
    tokens: [],
  }));
  tokenized.store.lengths.forEach((len, ord) => {
    const s = prov.sourceIdx[ord]!;
    const skip = skipByTokens(len);
    if (skip) stats[s]!.skipped[skip]!++;
    else {
      sourceDocs[s]!.ords.push(ord);
      sourceDocs[s]!.hashes.push(prov.hashes[ord]!);
      sourceDocs[s]!.tokens.push(len + specials);
    }
  });
  sourceDocs.forEach((s, i) => {
    if (s.ords.length === 0) throw new RuntimeFailure(`source '${s.name}' has no documents left: ${whyEmpty(stats[i]!)}; remove it, fix its files or text_column, or relax the filters`);
  });
  const plans = await runStage(sink, "sample", async () => planMixture(sourceDocs, recipe.seed, recipe.target_tokens), (p) => ({
    done: p.reduce((a, s) => a + s.picks.length, 0),
    unit: "documents selected",
  }));
  return { resolution, tokenizer, tokenized, prov, stats, plans, impl, decontamination };
}

/** Why a source kept no document, from its counts: "100 rows read: 100 null_text". */
function whyEmpty(s: SourceStats): string {
  const reasons = Object.entries(s.skipped).filter(([, n]) => n > 0).map(([r, n]) => `${n} ${r}`);
  const dups = s.duplicatesWithin + s.duplicatesAcross;
  if (dups > 0) reasons.push(`${dups} duplicates`);
  return `${s.documentsRead} rows read${reasons.length ? `: ${reasons.join(", ")}` : ""}`;
}

/** The budget a build states and gives DuckDB: --memory, or half of this machine's memory. */
export function memoryBudget(options: Pick<BuildOptions, "memoryBytes">): { bytes: number; source: string } {
  if (options.memoryBytes !== undefined) return { bytes: options.memoryBytes, source: "--memory" };
  return { bytes: Math.floor(totalmem() / 2), source: `half of this machine's ${formatSize(totalmem())}; --memory to change` };
}

async function openDb(options: BuildOptions): Promise<BuildDb> {
  const work = join(options.outDir, WORK_DIR);
  await mkdir(work, { recursive: true });
  const path = join(work, "build.duckdb");
  // Every stage's tables are rebuilt from the inputs; tokenised chunks are what a rerun reuses.
  await rm(path, { force: true });
  await rm(`${path}.wal`, { force: true });
  const tempDirectory = join(work, "duckdb-tmp");
  await rm(tempDirectory, { recursive: true, force: true });
  const budget = memoryBudget(options);
  options.sink({ type: "note", stage: "download", message: `memory budget for DuckDB: ${formatSize(budget.bytes)} (${budget.source}); beyond it DuckDB spills to ${tempDirectory}` });
  return BuildDb.open(path, 2, { memoryBytes: budget.bytes, tempDirectory });
}

/** What a build writes into its output folder; anything else there is the user's. */
const OUTPUT_FILE = /^(?:shard-\d+\.(?:npy|docs\.parquet)|MIXTURE\.md|README\.md)$/;
const TEMP_FILE = /\.[0-9a-f]{8}\.tmp$/;
const OWN_FILE = (name: string) => OUTPUT_FILE.test(name) || TEMP_FILE.test(name) || [MANIFEST, LOCK, WORK_DIR, LOCK_FILE].includes(name);

/**
 * Takes the output folder for this build: refuses one holding files the tool did not write (unless
 * `force`), and locks it so a second build into it waits its turn with a clear message.
 */
async function takeOutputFolder(outDir: string, force: boolean | undefined, command: string): Promise<FolderLock> {
  await mkdir(outDir, { recursive: true });
  const names = await readdir(outDir);
  const ours = names.some((n) => n === MANIFEST || n === WORK_DIR || n === LOCK);
  // A README.md alone is the user's; beside a manifest, a lock or a work folder it is our dataset card.
  const foreign = names.filter((n) => !OWN_FILE(n) || (n === "README.md" && !ours));
  if (foreign.length > 0 && !force) {
    const shown = foreign.slice(0, 5).join(", ") + (foreign.length > 5 ? `, and ${foreign.length - 5} more` : "");
    throw new UsageError(
      `${outDir} holds files chuxin-data did not write (${shown}); a build replaces README.md and the shards there. ` +
        `Choose a new or empty --out, or pass --force to build into it anyway`,
    );
  }
  return lockFolder(outDir, command);
}

/** Bytes of the shards a mixture of `tokens` selected tokens packs into (headers included; the document indexes are small beside them). */
export function shardBytes(tokens: number, sequenceLength: number, maxShardBytes: number): number {
  const sequences = Math.floor(tokens / sequenceLength);
  const perShard = Math.max(1, Math.floor((maxShardBytes - 128) / (4 * sequenceLength)));
  return 128 * Math.ceil(sequences / perShard) + 4 * sequences * sequenceLength;
}

/** Free bytes for an unprivileged writer on the filesystem holding `path`, or undefined where it cannot be read. */
export async function freeBytes(path: string): Promise<number | undefined> {
  try {
    const s = await statfs(path);
    return s.bavail * s.bsize;
  } catch {
    return undefined;
  }
}

/** Bytes under a folder (its files, recursively). */
export async function folderBytes(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const p = join(dir, e.name);
    if (e.isDirectory()) total += await folderBytes(p);
    else if (e.isFile()) total += (await stat(p)).size;
  }
  return total;
}

/** What a build would take from each source, without writing shards. */
export async function planBuild(options: BuildOptions): Promise<PlanResult> {
  const loaded = await loadRecipe(options.recipePath);
  const lock = await takeOutputFolder(options.outDir, options.force, "chuxin-data plan");
  try {
    const db = await openDb(options);
    try {
      const { plans, stats } = await prepare(options, db, loaded);
      const selected = plans.reduce((a, p) => a + p.tokensSelected, 0);
      const disk = {
        shards: shardBytes(selected, loaded.recipe.sequence_length, options.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES),
        work: await folderBytes(join(options.outDir, WORK_DIR)),
        free: await freeBytes(options.outDir),
      };
      return { loaded, plans, stats, disk };
    } finally {
      db.close();
    }
  } finally {
    await lock.release();
  }
}

/**
 * Moves a complete build from the staging folder into place. Until this point the previous build is
 * untouched, so a failed rebuild (the Hub gone, a typo, a kill) never costs the last good output. The
 * manifest goes first and comes back last: in between, nothing claims to be a complete build.
 */
async function publishStaged(staging: string, outDir: string): Promise<void> {
  await rm(join(outDir, MANIFEST), { force: true });
  for (const name of await readdir(outDir)) {
    if (OUTPUT_FILE.test(name) || TEMP_FILE.test(name)) await rm(join(outDir, name), { force: true });
  }
  const staged = (await readdir(staging)).filter((n) => n !== MANIFEST).sort();
  for (const name of staged) await rename(join(staging, name), join(outDir, name));
  await rename(join(staging, MANIFEST), join(outDir, MANIFEST));
  await rm(staging, { recursive: true, force: true });
}

export async function build(options: BuildOptions): Promise<Manifest> {
  const loaded = await loadRecipe(options.recipePath);
  const lock = await takeOutputFolder(options.outDir, options.force, "chuxin-data build");
  try {
    const staging = join(options.outDir, WORK_DIR, "staging");
    await rm(staging, { recursive: true, force: true });
    const db = await openDb(options);
    await mkdir(staging, { recursive: true });
    try {
      return await buildInto(options, loaded, db, staging);
    } finally {
      db.close();
    }
  } finally {
    await lock.release();
  }
}

async function buildInto(options: BuildOptions, loaded: LoadedRecipe, db: BuildDb, staging: string): Promise<Manifest> {
  const { resolution, tokenizer, tokenized, prov, stats, plans, impl, decontamination } = await prepare(options, db, loaded);
  const { recipe } = loaded;
  const selected = plans.reduce((a, p) => a + p.tokensSelected, 0);
  if (selected < recipe.sequence_length) {
    tokenized.store.close();
    throw new RuntimeFailure(
      `the mixture holds ${selected} tokens, fewer than one sequence of sequence_length ${recipe.sequence_length}, so the build would be empty; ` +
        `lower sequence_length, raise target_tokens or max_epochs, or add data`,
    );
  }
  // The shards' size is known exactly now: refuse before writing them when the disk cannot hold them.
  const need = shardBytes(selected, recipe.sequence_length, options.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES);
  const free = await freeBytes(staging);
  if (free !== undefined && need > free) {
    tokenized.store.close();
    throw new RuntimeFailure(
      `the shards need ${formatSize(need)} (${Math.floor(selected / recipe.sequence_length).toLocaleString("en-US")} sequences of ${recipe.sequence_length} tokens) and ${staging} has ${formatSize(free)} free; ` +
        `free space there, build to another --out, or lower target_tokens`,
    );
  }
  const stream = interleave(plans);
  const packed = await runStage(
    options.sink,
    "pack",
    () =>
      pack(db, plans, stream, tokenized.store, prov, {
        outDir: staging,
        sequenceLength: recipe.sequence_length,
        maxShardBytes: options.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES,
        eosId: tokenizer.eosId,
        bosId: recipe.tokenizer.add_bos ? tokenizer.bosId : undefined,
      }, options.sink).finally(() => tokenized.store.close()),
    (p) => ({ done: p.totalSequences, unit: "sequences" }),
  );
  return await runStage(options.sink, "manifest", async () => {
    const manifest = buildManifest({
      recipe,
      recipeFile: basename(loaded.path),
      recipeSha256: loaded.sha256,
      tokenizer: { ...resolution.tokenizer, eosId: tokenizer.eosId, bosId: tokenizer.bosId, vocabSize: tokenizer.vocabSize, impl },
      sources: resolution.sources,
      stats,
      plans,
      packed,
      decontamination,
    });
    for (const warning of manifest.warnings ?? []) options.sink({ type: "note", stage: "manifest", message: `warning: ${warning}` });
    await writeJsonAtomic(join(staging, LOCK), resolution.lock);
    await writeFileAtomic(join(staging, "MIXTURE.md"), mixtureMarkdown(manifest));
    await writeFileAtomic(join(staging, "README.md"), datasetCard(manifest));
    await writeJsonAtomic(join(staging, MANIFEST), manifest);
    await publishStaged(staging, options.outDir);
    return manifest;
  });
}
