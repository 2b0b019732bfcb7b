/**
 * `build RECIPE --merge DIR...`: the partitions' outputs (partition.ts) into shards, manifest, lock and MIXTURE.md
 * byte-identical to a single machine's build of the same recipe and inputs. The merge finishes what a partition
 * cannot see alone: dedup across partitions (the first occurrence in recipe order wins, as in dedup.ts; DuckDB
 * ranks the documents' keys, not their text, within its memory budget), the token filter's counts, the mixture and
 * the packing, reading each document's ids from the partition that tokenised it. It needs no network.
 */
import { cpus } from "node:os";
import { join } from "node:path";
import { loadRecipe, type LoadedRecipe } from "../../recipe/load.ts";
import type { Manifest } from "../../shards/manifest.ts";
import { type BuildDb, sqlString } from "../../util/duckdb.ts";
import { RuntimeFailure } from "../../util/errors.ts";
import { shrinkDb, withStagedBuild, type BuildOptions } from "../build.ts";
import type { DecontaminationReport } from "../stages/decontaminate.ts";
import type { BuildLock, LockedFile } from "../lock.ts";
import type { ManifestSource } from "../output/manifest.ts";
import { checkPartitionKeys, dedupRange, hashRange, mergedDocs, sumCounts, type DedupDone, type RangeCounts } from "./merge-dedup.ts";
import { PARTITION_TOKENIZER } from "./partition-format.ts";
import { partitionTokens, readPartitions, type Partition } from "./partitions.ts";
import { runStage } from "../progress.ts";
import { minhashSpec } from "../../recipe/schema.ts";
import type { NearDuplicateReport } from "../output/manifest.ts";
import { nearDuplicatesBySource } from "../schema.ts";
import { nearDuplicateReport } from "../stages/near-dedup.ts";
import { checkPartitionMinhash, nearDedupMerged } from "./merge-near-dedup.ts";
import { qualityReasons } from "../stages/quality.ts";
import { SKIPPED_ROWS_KEPT } from "../schema.ts";
import { emptyStats, selectMixture } from "../mixture/select.ts";
import { TokenStore, type ChunkRead, type TokenReader } from "../stages/tokenize.ts";
import { writeBuild, type SelectedBuild } from "../output/write-build.ts";

/**
 * The partitions' chunks one after another: a document's read position is the documents of the partitions before
 * its own plus its ord in its partition (plan_docs.read_pos), duplicates another partition keeps included.
 */
class MergedTokens implements TokenReader {
  private readonly firstChunk: number[] = [];
  readonly chunkCount: number;
  readonly documents: number;

  constructor(private readonly stores: TokenStore[]) {
    let chunks = 0;
    for (const s of stores) {
      this.firstChunk.push(chunks);
      chunks += s.chunkCount;
    }
    this.chunkCount = chunks;
    this.documents = stores.reduce((a, s) => a + s.documents, 0);
  }

  readChunk(c: number): ChunkRead {
    let p = this.stores.length - 1;
    while (this.firstChunk[p]! > c) p--;
    return this.stores[p]!.readChunk(c - this.firstChunk[p]!);
  }
}

/** Each source's files with the hash and row count their owner recorded. */
function mergedSources(parts: Partition[], loaded: LoadedRecipe): { sources: ManifestSource[]; fileRows: number[][] } {
  const count = parts.length;
  let g = 0;
  const fileRows: number[][] = [];
  const sources = parts[0]!.record.sources.map((s, i) => {
    const rows: number[] = [];
    const files: LockedFile[] = s.files.map((f, j) => {
      // readPartitions ordered the partitions by index, so file g belongs to parts[g % count] (ownsFile).
      const owner = parts[g++ % count]!;
      const own = owner.record.sources[i]!.files[j]!;
      if (own.sha256 === null || own.rows === null) {
        throw new RuntimeFailure(`${owner.dir}: partition.json does not record ${f.path}, which it should have read; rerun that partition`);
      }
      rows[j] = own.rows;
      return { path: f.path, size: f.size, sha256: own.sha256 };
    });
    fileRows.push(rows);
    return { spec: loaded.recipe.sources[i]!, hf: s.hf ?? undefined, files };
  });
  return { sources, fileRows };
}

export async function mergePartitions(options: BuildOptions, dirs: string[]): Promise<Manifest> {
  const loaded = await loadRecipe(options.recipePath);
  const parts = await readPartitions(dirs, loaded, options.recipePath);
  return withStagedBuild(options, loaded, "chuxin-data build --merge", async (db, out) => writeBuild(db, loaded, await planMerge(db, options, loaded, parts), out, options.sink));
}

/** Everything up to the mixture plan, from the partitions: the global dedup, the merged counts and lock, the mixture. */
export async function planMerge(
  db: BuildDb,
  options: BuildOptions,
  loaded: LoadedRecipe,
  parts: Partition[],
  done?: DedupDone,
  /** the minhash steps' bucket files, where they ran */
  bucketFiles?: string[],
): Promise<SelectedBuild> {
  const { recipe } = loaded;
  const { sources, fileRows } = mergedSources(parts, loaded);
  const first = parts[0]!.record;
  const stats = emptyStats(sources.length, qualityReasons(recipe));
  stats.forEach((st, i) => {
    st.fileRows = fileRows[i]!;
    for (const p of parts) {
      const s = p.record.sources[i]!;
      st.documentsRead += s.documents_read;
      for (const [reason, n] of Object.entries(s.skipped)) st.skipped[reason] = (st.skipped[reason] ?? 0) + n;
      for (const [reason, rows] of Object.entries(s.skipped_rows)) (st.skippedRows[reason] ??= []).push(...rows);
    }
    // Each partition kept its first rows of a reason; the first of all their files are among them.
    for (const [reason, rows] of Object.entries(st.skippedRows)) st.skippedRows[reason] = rows.sort((a, b) => a[0] - b[0] || a[1] - b[1]).slice(0, SKIPPED_ROWS_KEPT);
  });
  const minhash = minhashSpec(recipe.dedup.minhash);
  // The dedup steps' survivors are read in place, unless near-dedup must remove some of them.
  const keptKind = done && !minhash ? "VIEW" : "TABLE";
  await runStage(options.sink, "dedup", () => dedupAcross(db, parts, recipe.dedup.enabled, stats, done, keptKind), (r) => ({ done: r, unit: "duplicates removed across partitions" }));
  let nearDuplicates: NearDuplicateReport | undefined;
  if (minhash) {
    const rerun = (p: Partition) => p.rerun;
    if (!bucketFiles) await checkPartitionMinhash(parts, rerun);
    const near = await runStage(options.sink, "near-dedup", () => nearDedupMerged(db, parts, minhash, bucketFiles, options.workers ?? cpus().length), (r) => ({ done: r.removed, unit: `near-duplicates removed across partitions (${r.clusters} clusters)` }));
    for (const st of stats) st.nearDuplicates = { within: 0, across: 0 };
    for (const r of await nearDuplicatesBySource(db)) stats[r.s]!.nearDuplicates![r.within ? "within" : "across"] = Number(r.n);
    nearDuplicates = await nearDuplicateReport(db, minhash, near);
  }
  await mergedDocs(db, parts);
  await db.run(`DROP ${keptKind} kept`);
  const store = new MergedTokens(parts.map(partitionTokens));
  await shrinkDb(db, options);
  const plans = await selectMixture(db, recipe, stats, options.sink);
  const tokenizerLock = first.tokenizer.lock as unknown as BuildLock["tokenizer"];
  const buildLock: BuildLock = {
    lock_version: 1,
    tokenizer: tokenizerLock,
    sources: sources.map((s) => ({ name: s.spec.name, ...(s.hf ? { hf: s.hf } : { local: true as const }), files: s.files })),
  };
  let decontamination: DecontaminationReport | undefined;
  if (first.decontamination) {
    buildLock.decontamination = first.decontamination.lock as BuildLock["decontamination"];
    const removed = parts.reduce((a, p) => a + Number(p.record.decontamination!.report.documents_removed), 0);
    decontamination = { ...(first.decontamination.report as unknown as DecontaminationReport), documents_removed: removed };
  }
  return {
    lock: buildLock,
    tokenizer: { ...tokenizerLock, eosId: first.tokenizer.eos_id, bosId: first.tokenizer.bos_id, vocabSize: first.tokenizer.vocab_size, impl: first.tokenizer.impl },
    // Checked against the lock's sha256 as it is copied into the build (write-build.ts).
    tokenizerFile: join(parts[0]!.dir, PARTITION_TOKENIZER),
    sources,
    stats,
    plans,
    store,
    decontamination,
    nearDuplicates,
  };
}

/**
 * The global dedup: run here over every key (merge-dedup.ts), or read from the dedup steps' results, one per hash
 * range, when the merge ran them (`done`). Leaves the survivors in TEMP TABLE `kept` (near-dedup removes from it, and
 * mergedDocs makes them the plan's documents).
 */
async function dedupAcross(db: BuildDb, parts: Partition[], enabled: boolean, stats: ReturnType<typeof emptyStats>, done: DedupDone | undefined, keptKind: "VIEW" | "TABLE") {
  let counts: RangeCounts;
  if (done) {
    counts = sumCounts(done.counts, stats.length);
    await db.run(`CREATE OR REPLACE TEMP ${keptKind} kept AS SELECT * FROM read_parquet([${done.keptFiles.map(sqlString).join(", ")}])`);
  } else {
    await checkPartitionKeys(parts);
    counts = await dedupRange(db, parts, enabled, hashRange(0, 1), stats.length);
  }
  const localDups = parts.reduce((a, p) => a + p.record.duplicates, 0);
  if (counts.local !== localDups) {
    throw new RuntimeFailure(`the dedup found ${counts.local} of the partitions' own ${localDups} duplicates; ${done ? "rerun the dedup steps" : "rerun the partitions"}`);
  }
  counts.perSource.forEach((s, i) => {
    stats[i]!.duplicatesWithin = s.within;
    stats[i]!.duplicatesAcross = s.across;
  });
  return counts.local + counts.cross;
}
