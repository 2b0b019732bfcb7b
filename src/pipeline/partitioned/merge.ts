/**
 * `build RECIPE --merge DIR...`: the partitions' outputs (partition.ts) into shards, manifest, lock and MIXTURE.md
 * byte-identical to a single machine's build of the same recipe and inputs. The merge finishes what a partition
 * cannot see alone: dedup across partitions (the first occurrence in recipe order wins, as in dedup.ts; DuckDB
 * ranks the documents' keys, not their text, within its memory budget), the token filter's counts, the mixture and
 * the packing, reading each document's ids from the partition that tokenised it. It needs no network.
 */
import { join, resolve } from "node:path";
import { loadRecipe, type LoadedRecipe } from "../../recipe/load.ts";
import type { Manifest } from "../../shards/manifest.ts";
import { type BuildDb, sqlString } from "../../util/duckdb.ts";
import { RuntimeFailure, UsageError } from "../../util/errors.ts";
import { shrinkDb, withStagedBuild, type BuildOptions } from "../build.ts";
import type { DecontaminationReport } from "../stages/decontaminate.ts";
import type { BuildLock, LockedFile } from "../lock.ts";
import type { ManifestSource } from "../output/manifest.ts";
import { checkPartitionKeys, dedupRange, hashRange, mergedDocs, sumCounts, type DedupDone, type RangeCounts } from "./merge-dedup.ts";
import { PARTITION_TOKENIZER, PARTITION_TOKENS, readPartition, type PartitionRecord } from "./partition-format.ts";
import { runStage } from "../progress.ts";
import { qualityReasons } from "../stages/quality.ts";
import { SKIPPED_ROWS_KEPT } from "../schema.ts";
import { emptyStats, selectMixture } from "../mixture/select.ts";
import { TokenStore, type ChunkRead, type TokenReader } from "../stages/tokenize.ts";
import { writeBuild, type SelectedBuild } from "../output/write-build.ts";

export interface Partition {
  dir: string;
  record: PartitionRecord;
  /** the command that writes this partition again */
  rerun: string;
}

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

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** Reads every partition's record and checks they are the N slices of one recipe over the same inputs. */
export async function readPartitions(dirs: string[], loaded: LoadedRecipe, recipeArg: string): Promise<Partition[]> {
  if (dirs.length === 0) throw new UsageError(`--merge needs the partitions' folders: --merge DIR...`);
  const parts: Partition[] = [];
  for (const dir of dirs.map((d) => resolve(d))) {
    const record = await readPartition(dir, recipeArg);
    parts.push({ dir, record, rerun: `chuxin-data build ${recipeArg} --partition ${record.partition.index}/${record.partition.count} --out ${dir}` });
  }
  const count = parts[0]!.record.partition.count;
  const byIndex = new Map<number, Partition>();
  for (const p of parts) {
    const { index, count: n } = p.record.partition;
    if (n !== count) throw new UsageError(`${p.dir} is partition ${index}/${n} and ${parts[0]!.dir} is one of ${count}: every partition of a merge must come from the same --partition i/N split`);
    const twin = byIndex.get(index);
    if (twin) throw new UsageError(`${twin.dir} and ${p.dir} are both partition ${index}/${count}; pass each partition once`);
    byIndex.set(index, p);
    if (p.record.recipe.sha256 !== loaded.sha256) {
      throw new UsageError(
        `${p.dir} was built from a recipe with sha256 ${p.record.recipe.sha256}, but ${recipeArg} has sha256 ${loaded.sha256}; ` +
          `merge with the recipe the partitions were built from, or rebuild them`,
      );
    }
  }
  const missing = Array.from({ length: count }, (_, i) => i).filter((i) => !byIndex.has(i));
  if (missing.length > 0) {
    const shown = missing.slice(0, 8).map((i) => `${i}/${count}`).join(", ") + (missing.length > 8 ? `, and ${missing.length - 8} more` : "");
    throw new UsageError(`the merge is missing partition(s) ${shown}: build each with \`chuxin-data build ${recipeArg} --partition i/${count} --out DIR\` and pass every DIR to --merge`);
  }
  const ordered = Array.from({ length: count }, (_, i) => byIndex.get(i)!);
  // Every partition must have seen the same inputs: the same tokenizer, commits, file lists and benchmark data.
  const first = ordered[0]!;
  const inputs = (r: PartitionRecord) => ({
    tokenizer: r.tokenizer,
    sources: r.sources.map((s) => ({ name: s.name, hf: s.hf, files: s.files.map((f) => [f.path, f.size]) })),
    decontamination: r.decontamination && { lock: r.decontamination.lock, tasks: r.decontamination.report.tasks },
  });
  for (const p of ordered.slice(1)) {
    if (p.record.tokenizer.impl !== first.record.tokenizer.impl) {
      throw new UsageError(
        `${p.dir} was tokenised with the ${p.record.tokenizer.impl} tokenizer and ${first.dir} with the ${first.record.tokenizer.impl} one; ` +
          `rerun one of them with the other's --tokenizer-impl (the ids are the same, the manifest records which ran)`,
      );
    }
    const mine = inputs(p.record);
    const theirs = inputs(first.record);
    const what = (Object.keys(mine) as (keyof typeof mine)[]).find((k) => !same(mine[k], theirs[k]));
    if (what) {
      throw new UsageError(
        `${p.dir} and ${first.dir} resolved different inputs (${what}): the Hub moved between them. Build every partition from one lock: ` +
          `pass --locked --lock FILE (the recipe.lock.json of an earlier build of ${recipeArg}) to each, and rerun them`,
      );
    }
  }
  if (!same(first.record.sources.map((s) => s.name), loaded.recipe.sources.map((s) => s.name))) {
    throw new UsageError(`${first.dir}: its sources differ from ${recipeArg}'s; rebuild the partitions`);
  }
  return ordered;
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
export async function planMerge(db: BuildDb, options: BuildOptions, loaded: LoadedRecipe, parts: Partition[], done?: DedupDone): Promise<SelectedBuild> {
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
  const { store } = await runStage(options.sink, "dedup", () => dedupAcross(db, parts, recipe.dedup.enabled, stats, done), (r) => ({ done: r.removed, unit: "duplicates removed across partitions" }));
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
  };
}

/** A partition's token chunks, checked against its record. */
export function partitionTokens(p: Partition): TokenStore {
  const store = TokenStore.openChunks(
    p.record.chunks.map((c) => join(p.dir, PARTITION_TOKENS, c.file)),
    (file, why) => new RuntimeFailure(`${file}: ${why}; rerun that partition: ${p.rerun}`),
    p.record.chunks.map((c) => c.sha256),
  );
  if (store.documents !== p.record.documents) throw new RuntimeFailure(`${p.dir}: its token chunks hold ${store.documents} documents, partition.json ${p.record.documents}; rerun that partition`);
  return store;
}

/**
 * The global dedup: run here over every key (merge-dedup.ts), or read from the dedup steps' results, one per hash
 * range, when the merge ran them (`done`). Leaves the plan's documents in PLAN_DOCS.
 */
async function dedupAcross(db: BuildDb, parts: Partition[], enabled: boolean, stats: ReturnType<typeof emptyStats>, done: DedupDone | undefined) {
  let counts: RangeCounts;
  if (done) {
    counts = sumCounts(done.counts, stats.length);
    await db.run(`CREATE OR REPLACE TEMP VIEW kept AS SELECT * FROM read_parquet([${done.keptFiles.map(sqlString).join(", ")}])`);
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
  await mergedDocs(db, parts);
  await db.run(done ? `DROP VIEW kept` : `DROP TABLE kept`);
  return { store: new MergedTokens(parts.map(partitionTokens)), removed: counts.local + counts.cross };
}
