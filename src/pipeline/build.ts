import { mkdir, readFile, rm, stat } from "node:fs/promises";
import { cpus, totalmem } from "node:os";
import { basename, join } from "node:path";
import { HubClient } from "../hub/client.ts";
import { hubEnv, type HubEnv } from "../hub/env.ts";
import { loadRecipe, placed, type LoadedRecipe } from "../recipe/load.ts";
import { minhashSpec, qualityThresholds } from "../recipe/schema.ts";
import { DEFAULT_MAX_SHARD_BYTES, LOCK, WORK_DIR } from "../shards/layout.ts";
import type { Manifest } from "../shards/manifest.ts";
import { parseTokenizerJson, type TextTokenizer } from "../tokenizer/load.ts";
import { nativeTokenizer, type BatchTokenizer } from "../tokenizer/native.ts";
import { BuildDb } from "../util/duckdb.ts";
import { formatSize } from "../util/size.ts";
import { decontaminate, type DecontaminationReport } from "./stages/decontaminate.ts";
import { checkTokenizeSpace, checkWorkSpace, describeEstimate, estimateAfterDedup, estimateWork } from "./disk-estimate.ts";
import { dedup, keptDocuments, type DedupResult } from "./stages/dedup.ts";
import { hashDocuments, nearDedup, nearDuplicateReport } from "./stages/near-dedup.ts";
import { qualityFilter, qualityReasons } from "./stages/quality.ts";
import { ingest } from "./stages/ingest.ts";
import { readLock } from "./lock.ts";
import type { NearDuplicateReport, SourceStats } from "./output/manifest.ts";
import { folderBytes, freeBytes, shardBytes, takeOutputFolder } from "./output/output-folder.ts";
import { PARTITION_TOKENS } from "./partitioned/partition-format.ts";
import { PLAN_DOCS } from "./mixture/plan-tables.ts";
import { runStage, type ProgressSink } from "./progress.ts";
import { resolveInputsOverlapped, type FileFilter } from "./resolve.ts";
import type { SourcePlan } from "./mixture/sample.ts";
import {
  CORPUS_DB,
  DOC_TOKENS,
  dropCorpus,
  duplicatesBySource,
  fileRows,
  nearDuplicatesBySource,
  removeCorpusFiles,
  rowsBySkipReason,
  skippedRows,
} from "./schema.ts";
import { checkMixtureSize, emptyStats, selectMixture } from "./mixture/select.ts";
import { tokenizeDocuments } from "./stages/tokenize.ts";
import { streamOptionsFor } from "./stages/pack-stream.ts";
import { writeBuild, type BuildTarget } from "./output/write-build.ts";

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
  /** false: state the disk estimate but build even when it exceeds the free space (default true: refuse). */
  diskCheck?: boolean;
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

/**
 * Resolves, reads, filters, decontaminates, dedups and tokenises what this build reads: every input file, or, for a
 * partition, its slice of them (`filter`).
 */
export async function readInputs(options: BuildOptions, db: BuildDb, loaded: LoadedRecipe, filter?: FileFilter, planOnly = false) {
  try {
    return await readInputsOf(options, db, loaded, filter, planOnly);
  } catch (error) {
    throw placed(error, loaded);
  }
}

async function readInputsOf(options: BuildOptions, db: BuildDb, loaded: LoadedRecipe, filter: FileFilter | undefined, planOnly: boolean) {
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
  // The download stage pins every input and fetches the tokenizer; the data files then arrive while ingest reads
  // them (the first is being read while the rest download).
  const resolution = await runStage(sink, "download", () => resolveInputsOverlapped(client, recipe, loaded.path, lock, sink, filter), (r) => ({
    done: r.sources.reduce((a, s) => a + s.files.filter((f) => f.inSlice).length, 0),
    unit: "files to read (downloading alongside ingest)",
  }));
  // A partition's chunks are part of its output (merge reads them); a build's are a cache in .work.
  const cacheDir = filter ? join(options.outDir, PARTITION_TOKENS) : join(options.outDir, WORK_DIR, "tokens");
  // Until every file is in, a failure (a bad tokenizer, a bad file, too little disk) must also stop the downloads
  // still to start.
  let tokenizerJson: string;
  let tokenizer: ReturnType<typeof parseTokenizerJson>["info"];
  let reusableTokenBytes: number; // token chunks an earlier run left (nothing tokenises before the check after dedup)
  let native: (TextTokenizer & BatchTokenizer) | undefined;
  try {
    const workDir = join(options.outDir, WORK_DIR);
    reusableTokenBytes = await folderBytes(cacheDir);
    const estimate = estimateWork(recipe, resolution.sources, { withShards: !filter, reusableTokenBytes });
    const free = await freeBytes(workDir);
    sink({ type: "note", stage: "download", message: describeEstimate(estimate, workDir, free) });
    if (options.diskCheck ?? true) checkWorkSpace(estimate, workDir, free);
    tokenizerJson = await readFile(resolution.tokenizer.localPath, "utf8");
    const parsed = parseTokenizerJson(tokenizerJson, resolution.tokenizer.localPath);
    tokenizer = parsed.info;
    if ((options.tokenizerImpl ?? "native") === "native") {
      try {
        native = nativeTokenizer(parsed.json, tokenizer, options.workers ?? cpus().length);
      } catch (error) {
        sink({ type: "note", stage: "tokenize", message: `native tokenizer unavailable (${(error as Error).message}); using @huggingface/tokenizers` });
      }
    }
    await runStage(sink, "ingest", () => ingest(db, recipe, resolution.sources, sink, resolution.ready), (n) => ({ done: n, unit: "rows" }));
    await resolution.done;
  } finally {
    resolution.cancel();
  }
  const impl = native ? "native" : "js";
  let hashedSources: number[] = [];
  if (qualityThresholds(recipe.filters).size > 0) {
    ({ hashedSources } = await runStage(
      sink,
      "quality",
      () => qualityFilter(db, recipe, options.workers ?? cpus().length, (done, total) => sink({ type: "stage_progress", stage: "quality", done, total, unit: "rows checked" })),
      (r) => ({
        done: r.removed,
        unit: `rows failed the quality filters (of ${r.checked.toLocaleString("en-US")} checked${r.hashedSources.length > 0 ? "; band keys of the rows that pass taken for near-dedup" : ""})`,
      }),
    ));
  }
  if (recipe.decontaminate) {
    const result = await runStage(sink, "decontaminate", () => decontaminate(db, client, recipe, loaded.path, lock?.decontamination, sink), (r) => ({
      done: r!.report.documents_removed,
      unit: "documents removed",
    }));
    resolution.lock.decontamination = result!.lock;
    decontamination = result!.report;
  }
  let deduped = await runStage(sink, "dedup", () => dedup(db, recipe), (r) => ({ done: r.removed, unit: "duplicates removed" }));
  const minhash = minhashSpec(recipe.dedup.minhash);
  let nearDuplicates: NearDuplicateReport | undefined;
  if (minhash && filter) {
    // A partition hashes its documents for the merge, which finds near-duplicates across every partition.
    await runStage(
      sink,
      "near-dedup",
      () =>
        hashDocuments(db, minhash, options.workers ?? cpus().length, (done, total) => sink({ type: "stage_progress", stage: "near-dedup", done, total, unit: "documents hashed" }), hashedSources),
      () => ({ unit: "documents' band keys kept for the merge" }),
    );
  } else if (minhash) {
    const near = await runStage(
      sink,
      "near-dedup",
      () =>
        nearDedup(db, minhash, options.workers ?? cpus().length, (done, total) => sink({ type: "stage_progress", stage: "near-dedup", done, total, unit: "documents hashed" }), hashedSources),
      (r) => ({ done: r.removed, unit: `near-duplicates removed (${r.clusters} clusters; ${r.candidatePairs} candidate pairs${minhash.verify_jaccard !== undefined ? `, ${r.rejectedPairs} below verify_jaccard` : ""})` }),
    );
    deduped = { removed: deduped.removed, ...(await keptDocuments(db)) };
    nearDuplicates = await nearDuplicateReport(db, minhash, near);
  }
  await checkBeforeTokenize(options, recipe, deduped, reusableTokenBytes, !!filter, planOnly);
  const tokenized = await runStage(
    sink,
    "tokenize",
    () =>
      tokenizeDocuments(
        db,
        { workers: options.workers, tokenizerJson, tokenizerPath: resolution.tokenizer.localPath, tokenizerSha256: tokenizer.sha256, cacheDir, native, impl },
        sink,
      ),
    // Counted as the shards and the mixture table count them: each document's EOS (and BOS) included.
    (r) => ({ done: r.tokens + r.store.documents * (1 + (recipe.tokenizer.add_bos ? 1 : 0)), unit: `tokens (${recipe.tokenizer.add_bos ? "BOS and EOS" : "EOS"} included)`, reused: r.reusedChunks > 0 }),
  );
  // Every kept document is in the token chunks now: the text's database goes (a build keeps its tokens in .work).
  await dropCorpus(db);
  const stats = emptyStats(resolution.sources.length, qualityReasons(recipe));
  for (const r of await rowsBySkipReason(db)) {
    stats[r.s]!.documentsRead += Number(r.n);
    if (r.reason) stats[r.s]!.skipped[r.reason] = Number(r.n);
  }
  for (const r of await fileRows(db)) stats[r.s]!.fileRows[r.f] = Number(r.rows);
  for (const r of await skippedRows(db)) (stats[r.s]!.skippedRows[r.reason] ??= []).push([r.f, Number(r.row)]);
  return { resolution, tokenizer, tokenized, stats, impl, decontamination, nearDuplicates };
}

/**
 * Before the longest stage, with exact counts: a max_epochs too large to plan, and the disk the tokens (and shards)
 * need, from the kept text's size.
 */
async function checkBeforeTokenize(
  options: BuildOptions,
  recipe: LoadedRecipe["recipe"],
  deduped: DedupResult,
  reusableTokenBytes: number,
  partition: boolean,
  planOnly: boolean,
): Promise<void> {
  // A partition sees only its slice, so only the merge can judge the whole mixture.
  if (!partition) checkMixtureSize(recipe, recipe.sources.map((_, i) => deduped.keptBySource.get(i)?.documents ?? 0));
  const workDir = join(options.outDir, WORK_DIR);
  const corpusDbBytes = await stat(join(workDir, CORPUS_DB)).then((s) => s.size, () => 0);
  const e = estimateAfterDedup(recipe, recipe.sources.map((_, i) => deduped.keptBySource.get(i)?.bytes ?? 0), {
    withShards: !partition,
    reusableTokenBytes,
    corpusDbBytes,
  });
  if (options.diskCheck ?? true) checkTokenizeSpace(e, workDir, await freeBytes(workDir), planOnly);
}

/** Everything up to the mixture plan, on one machine. */
async function prepare(options: BuildOptions, db: BuildDb, loaded: LoadedRecipe, planOnly = false) {
  const { resolution, tokenizer, tokenized, stats, impl, decontamination, nearDuplicates } = await readInputs(options, db, loaded, undefined, planOnly);
  await db.run(
    `CREATE OR REPLACE TEMP VIEW ${PLAN_DOCS} AS
     SELECT u.ord AS read_pos, u.source_idx, u.file_idx, u.row_idx, u.doc_hash, t.tokens FROM unique_docs u JOIN ${DOC_TOKENS} t USING (ord)`,
  );
  for (const r of await duplicatesBySource(db)) {
    if (r.within) stats[r.s]!.duplicatesWithin = Number(r.n);
    else stats[r.s]!.duplicatesAcross = Number(r.n);
  }
  if (nearDuplicates) {
    for (const st of stats) st.nearDuplicates = { within: 0, across: 0 };
    for (const r of await nearDuplicatesBySource(db)) stats[r.s]!.nearDuplicates![r.within ? "within" : "across"] = Number(r.n);
  }
  await shrinkDb(db, options);
  const plans = await selectMixture(db, loaded.recipe, stats, options.sink);
  return { resolution, tokenizer, tokenized, stats, plans, impl, decontamination, nearDuplicates };
}

/** The budget a build states: --memory, or half of this machine's memory. */
export function memoryBudget(options: Pick<BuildOptions, "memoryBytes">): { bytes: number; source: string } {
  if (options.memoryBytes !== undefined) return { bytes: options.memoryBytes, source: "--memory" };
  return { bytes: Math.floor(totalmem() / 2), source: `half of this machine's ${formatSize(totalmem())}; --memory to change` };
}

/** DuckDB's part of the budget while it reads, decontaminates and dedups, and from sampling on, when it sorts and joins
 * the plan's tables (plan-tables.ts) beside pack's buffers; the rest is the tokenizer's and Node's, and covers what
 * DuckDB allocates beyond its limit (measured: about 300 MB at 1 GB). Never under 64 MiB, DuckDB's floor here. */
export function duckdbShares(budget: number): { reading: number; packing: number } {
  const floor = 64 * 2 ** 20;
  return { reading: Math.max(floor, Math.floor(0.6 * budget)), packing: Math.max(floor, Math.floor(0.4 * budget)) };
}

/** What pack spends on token data (its gather buffer and the bins' write buffers): a tenth of the budget, at least 32 MiB. */
export function packShare(budget: number): number {
  return Math.max(32 * 2 ** 20, Math.floor(0.1 * budget));
}

export async function openDb(options: BuildOptions): Promise<BuildDb> {
  const work = join(options.outDir, WORK_DIR);
  await mkdir(work, { recursive: true });
  const path = join(work, "build.duckdb");
  // Every stage's tables are rebuilt from the inputs; tokenised chunks are what a rerun reuses.
  await rm(path, { force: true });
  await rm(`${path}.wal`, { force: true });
  const tempDirectory = join(work, "duckdb-tmp");
  await rm(tempDirectory, { recursive: true, force: true });
  const budget = memoryBudget(options);
  const shares = duckdbShares(budget.bytes);
  options.sink({
    type: "note",
    stage: "download",
    message:
      `memory budget: ${formatSize(budget.bytes)} (${budget.source}); DuckDB gets ${formatSize(shares.reading)} of it while it reads and dedups ` +
      `(beyond that it spills to ${tempDirectory}) and ${formatSize(shares.packing)} from sampling on; pack's buffers get ${formatSize(packShare(budget.bytes))}; ` +
      `the rest is for tokenisation`,
  });
  return BuildDb.open(path, 2, { memoryBytes: shares.reading, tempDirectory });
}

/** Closes the work database; a build that failed before tokenising all its text does not leave that text's database behind. */
export async function closeDb(db: BuildDb): Promise<void> {
  db.close();
  await removeCorpusFiles(db);
}

/** Lowers DuckDB to its packing share once the heavy queries are done, so its buffers make room for the plan. */
export async function shrinkDb(db: BuildDb, options: BuildOptions): Promise<void> {
  await db.setMemoryLimit(duckdbShares(memoryBudget(options).bytes).packing);
}

/** What a build would take from each source, without writing shards. */
export async function planBuild(options: BuildOptions): Promise<PlanResult> {
  const loaded = await loadRecipe(options.recipePath);
  const lock = await takeOutputFolder(options.outDir, options.force, "chuxin-data plan");
  try {
    const db = await openDb(options);
    try {
      const { plans, stats } = await prepare(options, db, loaded, true);
      const selected = plans.reduce((a, p) => a + p.tokensSelected, 0);
      const disk = {
        shards: shardBytes(selected, loaded.recipe.sequence_length, options.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES),
        work: await folderBytes(join(options.outDir, WORK_DIR)),
        free: await freeBytes(options.outDir),
      };
      return { loaded, plans, stats, disk };
    } finally {
      await closeDb(db);
    }
  } finally {
    await lock.release();
  }
}

export async function build(options: BuildOptions): Promise<Manifest> {
  const loaded = await loadRecipe(options.recipePath);
  return withStagedBuild(options, loaded, "chuxin-data build", (db, out) => buildInto(options, loaded, db, out));
}

/**
 * Takes and locks the output folder, opens a fresh work database and an empty staging folder, and runs `body`, which
 * writes the build into staging and moves it in (write-build.ts): build and merge share this.
 */
export async function withStagedBuild(
  options: BuildOptions,
  loaded: LoadedRecipe,
  command: string,
  body: (db: BuildDb, out: BuildTarget) => Promise<Manifest>,
): Promise<Manifest> {
  const lock = await takeOutputFolder(options.outDir, options.force, command, { name: loaded.recipe.name, path: basename(loaded.path) });
  try {
    const staging = join(options.outDir, WORK_DIR, "staging");
    await rm(staging, { recursive: true, force: true });
    const db = await openDb(options);
    await mkdir(staging, { recursive: true });
    try {
      return await body(db, {
        outDir: options.outDir,
        staging,
        maxShardBytes: options.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES,
        recipeFile: basename(loaded.path),
        stream: streamOptionsFor(packShare(memoryBudget(options).bytes), join(options.outDir, WORK_DIR, "pack-bins")),
      });
    } finally {
      await closeDb(db);
    }
  } finally {
    await lock.release();
  }
}

async function buildInto(options: BuildOptions, loaded: LoadedRecipe, db: BuildDb, out: BuildTarget): Promise<Manifest> {
  const { resolution, tokenizer, tokenized, stats, plans, impl, decontamination, nearDuplicates } = await prepare(options, db, loaded);
  return writeBuild(
    db,
    loaded,
    {
      lock: resolution.lock,
      tokenizer: { ...resolution.tokenizer, eosId: tokenizer.eosId, bosId: tokenizer.bosId, vocabSize: tokenizer.vocabSize, impl },
      tokenizerFile: resolution.tokenizer.localPath,
      sources: resolution.sources,
      stats,
      plans,
      store: tokenized.store,
      decontamination,
      nearDuplicates,
    },
    out,
    options.sink,
  );
}
