import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { writeJsonAtomic } from "../util/atomic.ts";
import type { Manifest } from "./manifest.ts";
import { BuildDb, sqlString } from "../util/duckdb.ts";
import { sha256File } from "../util/hash.ts";
import { readNpyInfo } from "./npy.ts";

/** Re-hashes every shard and index against the manifest and checks that the counts add up. */
export async function verifyBuild(outDir: string, manifest: Manifest): Promise<string[]> {
  const problems: string[] = [];
  if (!(manifest.total_sequences > 0)) problems.push(`the build holds no sequences (total_sequences ${manifest.total_sequences}); nothing can be trained on it`);
  const L = manifest.sequence_length;
  let sequences = 0;
  const perSource = new Map<string, number>();
  const db = await BuildDb.open(":memory:", 1);
  try {
    for (const shard of manifest.shards) {
      const path = join(outDir, shard.path);
      try {
        const sha = await sha256File(path);
        if (sha !== shard.sha256) problems.push(`${shard.path}: sha256 ${sha} differs from the manifest's ${shard.sha256}`);
        const info = await readNpyInfo(path);
        if (info.rows !== shard.sequences || info.cols !== L) {
          problems.push(`${shard.path}: shape (${info.rows}, ${info.cols}), the manifest says (${shard.sequences}, ${L})`);
        }
      } catch (error) {
        problems.push(`${shard.path}: ${(error as Error).message}`);
      }
      sequences += shard.sequences;
      const indexPath = join(outDir, shard.doc_index);
      try {
        const sha = await sha256File(indexPath);
        if (sha !== shard.doc_index_sha256) problems.push(`${shard.doc_index}: sha256 ${sha} differs from the manifest's ${shard.doc_index_sha256}`);
        const rows = await db.rows<{ source: string; n: bigint }>(
          `SELECT source, sum(length) AS n FROM read_parquet(${sqlString(indexPath)}) GROUP BY source`,
        );
        let total = 0;
        for (const r of rows) {
          total += Number(r.n);
          perSource.set(r.source, (perSource.get(r.source) ?? 0) + Number(r.n));
        }
        if (total !== shard.sequences * L) problems.push(`${shard.doc_index}: covers ${total} tokens, the shard holds ${shard.sequences * L}`);
      } catch (error) {
        problems.push(`${shard.doc_index}: ${(error as Error).message.split("\n")[0]}`);
      }
    }
  } finally {
    db.close();
  }
  if (sequences !== manifest.total_sequences) problems.push(`shards hold ${sequences} sequences, total_sequences says ${manifest.total_sequences}`);
  if (sequences * L !== manifest.total_tokens) problems.push(`shards hold ${sequences * L} tokens, total_tokens says ${manifest.total_tokens}`);
  const written = manifest.sources.reduce((a, s) => a + s.tokens_written, 0);
  if (written !== manifest.total_tokens) problems.push(`sources' tokens_written add up to ${written}, total_tokens is ${manifest.total_tokens}`);
  for (const s of manifest.sources) {
    const indexed = perSource.get(s.name) ?? 0;
    if (indexed !== s.tokens_written) problems.push(`source '${s.name}': document indexes hold ${indexed} tokens, tokens_written says ${s.tokens_written}`);
  }
  return problems;
}

interface HashCacheEntry {
  size: number;
  mtimeMs: number;
  sha256: string;
}

/**
 * Checks every shard and document index against the manifest's sha256 before training reads them. Files
 * already hashed with the same size and mtime are taken from `cacheFile`, so a restart costs a stat per
 * file, not a pass over the data. Returns the problems (empty when every file matches).
 */
export async function checkShardHashes(outDir: string, manifest: Manifest, cacheFile: string): Promise<string[]> {
  let cache: Record<string, HashCacheEntry> = {};
  try {
    cache = JSON.parse(await readFile(cacheFile, "utf8"));
  } catch {
    /* no cache yet, or a torn one: hash again */
  }
  const problems: string[] = [];
  const next: Record<string, HashCacheEntry> = {};
  for (const shard of manifest.shards) {
    for (const [name, want] of [[shard.path, shard.sha256], [shard.doc_index, shard.doc_index_sha256]] as const) {
      const path = join(outDir, name);
      const info = await stat(path).catch(() => undefined);
      if (!info) {
        problems.push(`${path}: missing`);
        continue;
      }
      const hit = cache[name];
      const sha256 = hit && hit.size === info.size && hit.mtimeMs === info.mtimeMs ? hit.sha256 : await sha256File(path);
      next[name] = { size: info.size, mtimeMs: info.mtimeMs, sha256 };
      if (sha256 !== want) problems.push(`${path}: sha256 ${sha256} differs from the manifest's ${want}`);
    }
  }
  await writeJsonAtomic(cacheFile, next).catch(() => {});
  return problems;
}
