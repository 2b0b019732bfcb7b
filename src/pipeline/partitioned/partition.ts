/**
 * `build RECIPE --partition i/N`: one machine's slice of a build. It reads the input files dealt to it
 * (partition-format.ts ownsFile), filters, decontaminates, dedups them among themselves and tokenises what is left,
 * and leaves that in its folder for `build --merge`, which finishes the global dedup, the mixture and the shards.
 * The slice is a function of the recipe and the lock alone, so a failed partition reruns alone, on any machine.
 */
import { readdir, readFile, rename, rm } from "node:fs/promises";
import { basename, join } from "node:path";
import { loadRecipe } from "../../recipe/load.ts";
import { minhashSpec } from "../../recipe/schema.ts";
import { tempPathFor, writeFileAtomic, writeJsonAtomic } from "../../util/atomic.ts";
import { type BuildDb, sqlString } from "../../util/duckdb.ts";
import { sha256File } from "../../util/hash.ts";
import { closeDb, openDb, readInputs, type BuildOptions } from "../build.ts";
import { takeOutputFolder } from "../output/output-folder.ts";
import {
  ownsFile,
  PARTITION_DOCS,
  PARTITION_DUPLICATES,
  PARTITION_FORMAT,
  PARTITION_JSON,
  PARTITION_MINHASH,
  PARTITION_TOKENIZER,
  PARTITION_TOKENS,
  type PartitionRecord,
  type PartitionSlice,
  sealPartition,
} from "./partition-format.ts";
import { runStage } from "../progress.ts";
import { DOC_TOKENS } from "../schema.ts";
import { minhashKeysByBand } from "../stages/near-dedup.ts";
import { chunkDigest } from "../stages/tokenize.ts";

async function copyToParquet(db: BuildDb, query: string, path: string): Promise<string> {
  const tmp = tempPathFor(path);
  try {
    await db.run(`COPY (${query}) TO ${sqlString(tmp)} (FORMAT parquet, COMPRESSION zstd)`);
    await rename(tmp, path);
  } catch (error) {
    await rm(tmp, { force: true });
    throw error;
  }
  return sha256File(path);
}

export async function buildPartition(options: BuildOptions, slice: PartitionSlice): Promise<PartitionRecord> {
  const loaded = await loadRecipe(options.recipePath);
  const lock = await takeOutputFolder(options.outDir, options.force, `chuxin-data build --partition ${slice.index}/${slice.count}`);
  try {
    // From here until the end this folder does not claim to be a finished partition.
    await rm(join(options.outDir, PARTITION_JSON), { force: true });
    const db = await openDb(options);
    try {
      const { resolution, tokenizer, tokenized, stats, impl, decontamination } = await readInputs(options, db, loaded, (g) => ownsFile(slice, g));
      const store = tokenized.store;
      const files = resolution.sources.reduce((a, s) => a + s.files.length, 0);
      if (!resolution.sources.some((s) => s.files.some((f) => f.inSlice))) {
        options.sink({
          type: "note",
          stage: "manifest",
          message: `warning: partition ${slice.index}/${slice.count} reads no file: the recipe has ${files} input file(s), dealt one a partition in turn; it is still a valid (empty) part of the merge, but at most ${files} partition(s) do any work`,
        });
      }
      return await runStage(options.sink, "manifest", async () => {
        // Sorted by hash, so a merge's dedup job for a hash range reads only the row groups of its range (merge-dedup.ts).
        const docsSha = await copyToParquet(
          db,
          `SELECT u.ord::BIGINT AS ord, u.source_idx, u.file_idx, u.row_idx, u.doc_hash, t.tokens FROM unique_docs u JOIN ${DOC_TOKENS} t USING (ord) ORDER BY u.doc_hash, u.ord`,
          join(options.outDir, PARTITION_DOCS),
        );
        const dupsSha = await copyToParquet(
          db,
          `SELECT source_idx, doc_hash FROM duplicates ORDER BY doc_hash, source_idx, file_idx, row_idx`,
          join(options.outDir, PARTITION_DUPLICATES),
        );
        const { n: duplicates } = await db.one<{ n: bigint }>(`SELECT count(*) AS n FROM duplicates`);
        // Sorted by band and key, so a merge's minhash job for a band range reads only that range's row groups.
        const minhash = minhashSpec(loaded.recipe.dedup.minhash);
        const minhashSha = minhash
          ? await copyToParquet(db, `SELECT ord::BIGINT AS ord, band, key FROM (${minhashKeysByBand(minhash.bands)}) ORDER BY band, key, ord`, join(options.outDir, PARTITION_MINHASH))
          : undefined;
        const chunks: PartitionRecord["chunks"] = [];
        // The payload digests the chunks' headers hold (tokenisation computed them, or checked them on reuse).
        for (const c of store.chunks()) chunks.push({ file: basename(c.file), sha256: chunkDigest(c.file), documents: c.documents, ids: c.ids });
        // Chunks an earlier, stopped run wrote for other text are not part of this partition.
        const keep = new Set(chunks.map((c) => c.file));
        const tokensDir = join(options.outDir, PARTITION_TOKENS);
        for (const name of await readdir(tokensDir).catch(() => [] as string[])) if (!keep.has(name)) await rm(join(tokensDir, name), { force: true });
        const { localPath: tokenizerFile, ...lockedTokenizer } = resolution.tokenizer;
        await writeFileAtomic(join(options.outDir, PARTITION_TOKENIZER), await readFile(tokenizerFile));
        const record = sealPartition({
          format: PARTITION_FORMAT,
          partition: slice,
          recipe: { path: basename(loaded.path), sha256: loaded.sha256 },
          tokenizer: { lock: lockedTokenizer, eos_id: tokenizer.eosId, bos_id: tokenizer.bosId, vocab_size: tokenizer.vocabSize, impl },
          sources: resolution.sources.map((s, i) => ({
            name: s.spec.name,
            hf: s.hf ?? null,
            files: s.files.map((f, j) => ({ path: f.path, size: f.size, sha256: f.inSlice ? f.sha256 : null, rows: f.inSlice ? (stats[i]!.fileRows[j] ?? 0) : null })),
            documents_read: stats[i]!.documentsRead,
            skipped: stats[i]!.skipped,
            skipped_rows: stats[i]!.skippedRows,
          })),
          decontamination: decontamination ? { report: { ...decontamination }, lock: resolution.lock.decontamination ?? [] } : null,
          documents: store.documents,
          duplicates: Number(duplicates),
          tokens: tokenized.tokens,
          chunks,
          docs_sha256: docsSha,
          duplicates_sha256: dupsSha,
          ...(minhashSha ? { minhash_sha256: minhashSha } : {}),
        });
        await writeJsonAtomic(join(options.outDir, PARTITION_JSON), record);
        return record;
      });
    } finally {
      await closeDb(db);
    }
  } finally {
    await lock.release();
  }
}
