import { existsSync } from "node:fs";
import { stat } from "node:fs/promises";
import { dirname, isAbsolute, resolve } from "node:path";
import type { HubClient, RemoteFile, RepoRef } from "../hub/client.ts";
import { globToRegExp } from "../hub/paths.ts";
import { DEFAULT_TOKENIZER_REPO, type Recipe, type SourceSpec } from "../recipe/schema.ts";
import { RuntimeFailure, UsageError } from "../util/errors.ts";
import { sha256File } from "../util/hash.ts";
import { formatSize } from "../util/size.ts";
import type { BuildLock, LockedFile, LockedSource, LockedTokenizer } from "./lock.ts";
import { freeBytes } from "./output/output-folder.ts";
import { findLocalFiles } from "./local-files.ts";
import type { ProgressSink } from "./progress.ts";

export interface ResolvedFile extends LockedFile {
  localPath: string;
  /**
   * False for a file another partition reads (build --partition): it is listed but neither downloaded nor
   * hashed, so its sha256 is the lock's, or "" without one, and localPath is "".
   */
  inSlice: boolean;
}

/** Which input files this build reads, by their number over all sources (partition-format.ts ownsFile); all by default. */
export type FileFilter = (globalFile: number) => boolean;

export interface ResolvedSource {
  spec: SourceSpec;
  index: number;
  hf?: { repo: string; revision: string; commit: string };
  files: ResolvedFile[];
}

export interface ResolvedTokenizer extends LockedTokenizer {
  localPath: string;
}

export interface Resolution {
  sources: ResolvedSource[];
  tokenizer: ResolvedTokenizer;
  lock: BuildLock;
}

/**
 * A resolution whose Hub files are still arriving (resolveInputs with `overlap`): the first file can be read while
 * the rest download, DOWNLOADS_AT_ONCE at a time in recipe order. Each file's entry is filled in (localPath, size,
 * sha256) when it lands, and the lock's file list once all have.
 */
export interface OverlappedResolution extends Resolution {
  /** Resolves when source s's file j is on disk; rejects with its download's error. */
  ready(source: number, file: number): Promise<void>;
  /** Every download finished (and the lock final). */
  done: Promise<void>;
  /** Starts no further download (the build failed). */
  cancel(): void;
}

/** Hub files downloaded at once while ingest reads: enough to keep a link busy, as huggingface_hub's snapshot workers do. */
export const DOWNLOADS_AT_ONCE = 4;

async function resolveLocal(spec: SourceSpec, sourceIndex: number, recipeDir: string, sink: ProgressSink, reads: (file: number) => boolean, locked: LockedSource | undefined): Promise<ResolvedFile[]> {
  const found = await findLocalFiles(spec, sourceIndex, recipeDir);
  const outside = [...found.keys()].filter((p) => p.startsWith("../") || isAbsolute(p));
  if (outside.length > 0) {
    sink({
      type: "note",
      stage: "download",
      message: `source '${spec.name}': ${outside.length} file(s) outside the recipe's folder ${recipeDir} (${outside.slice(0, 3).join(", ")}${outside.length > 3 ? ", …" : ""}); the lock and manifest record them as given`,
    });
  }
  const files: ResolvedFile[] = [];
  for (const [j, [path, localPath]] of [...found].sort(([a], [b]) => (a < b ? -1 : 1)).entries()) {
    const size = (await stat(localPath)).size;
    if (reads(j)) files.push({ path, localPath, size, sha256: await sha256File(localPath), inSlice: true });
    else files.push({ path, localPath: "", size, sha256: locked?.files.find((f) => f.path === path)?.sha256 ?? "", inSlice: false });
  }
  return files;
}

interface HubListing {
  spec: SourceSpec;
  repo: RepoRef;
  commit: string;
  wanted: { path: string; size: number; gitOid?: string; lfsSha256?: string; sha256?: string }[];
}

/** A Hub source's commit and the files its globs (or the lock) name, before anything is downloaded. */
async function listHub(client: HubClient, spec: SourceSpec, locked: LockedSource | undefined): Promise<HubListing> {
  const repo: RepoRef = { type: "dataset", id: spec.hf!.repo };
  if (locked) {
    if (!locked.hf || locked.hf.repo !== spec.hf!.repo) {
      throw new UsageError(`source '${spec.name}': the lock names ${locked.hf?.repo ?? "a local source"}, the recipe ${spec.hf!.repo}; rebuild without --locked to refresh the lock`);
    }
  }
  const commit = locked?.hf?.commit ?? (await client.resolveRevision(repo, spec.hf!.revision));
  if (locked) return { spec, repo, commit, wanted: locked.files.map((f) => ({ path: f.path, size: f.size, sha256: f.sha256 })) };
  const listing = await client.listFiles(repo, commit);
  const regexes = spec.hf!.files.map(globToRegExp);
  const wanted = listing.filter((f) => regexes.some((r) => r.test(f.path)));
  if (wanted.length === 0) {
    const sample = listing.slice(0, 12).map((f) => f.path).join(", ");
    throw new UsageError(`source '${spec.name}': hf.files ${JSON.stringify(spec.hf!.files)} match no file in ${spec.hf!.repo}@${commit.slice(0, 12)} (it has: ${sample})`);
  }
  return { spec, repo, commit, wanted };
}

/**
 * Refuses, before the first byte is fetched, downloads that do not fit the free space of the Hugging Face cache,
 * with the numbers and what to do.
 */
async function checkDownloadSpace(client: HubClient, listings: { listing: HubListing; reads: (file: number) => boolean }[]): Promise<void> {
  let bytes = 0;
  let count = 0;
  for (const { listing, reads } of listings) {
    for (const [i, f] of listing.wanted.entries()) {
      if (!reads(i) || existsSync(client.snapshotFile(listing.repo, listing.commit, f.path))) continue;
      bytes += f.size;
      count++;
    }
  }
  const cache = client.cacheDir;
  const free = await freeBytes(existsSync(cache) ? cache : dirname(cache));
  if (free !== undefined && bytes > free) {
    throw new RuntimeFailure(
      `the ${count} input file(s) not yet in the Hugging Face cache need ${formatSize(bytes)} and ${cache} has ${formatSize(free)} free; ` +
        `free space there, point HF_HOME (or HF_HUB_CACHE) at a larger disk, or build as partitions on several machines (--partition i/N)`,
    );
  }
}

async function resolveTokenizer(client: HubClient, recipe: Recipe, recipeDir: string, locked: LockedTokenizer | undefined): Promise<ResolvedTokenizer> {
  const spec = recipe.tokenizer;
  if (spec.path) {
    const localPath = resolve(recipeDir, spec.path);
    let sha256: string;
    try {
      sha256 = await sha256File(localPath);
    } catch {
      throw new UsageError(`tokenizer.path: ${localPath} cannot be read; fix the path or use tokenizer.repo`);
    }
    if (locked && locked.sha256 !== sha256) {
      throw new RuntimeFailure(`tokenizer ${localPath}: sha256 ${sha256} differs from the lock's ${locked.sha256}`);
    }
    return { path: spec.path, file: spec.file, size: (await stat(localPath)).size, sha256, localPath };
  }
  const repo: RepoRef = { type: "model", id: spec.repo ?? DEFAULT_TOKENIZER_REPO };
  const revision = spec.revision ?? "main";
  const commit = locked?.commit ?? (await client.resolveRevision(repo, revision));
  let entry: RemoteFile | undefined;
  if (locked?.size !== undefined) {
    entry = { path: spec.file, size: locked.size, gitOid: undefined, lfsSha256: locked.sha256 };
  } else {
    entry = (await client.listFiles(repo, commit)).find((f) => f.path === spec.file);
    if (!entry) throw new UsageError(`tokenizer: ${repo.id}@${commit.slice(0, 12)} has no ${spec.file}`);
  }
  const got = await client.download(repo, commit, entry, locked?.sha256);
  return { repo: repo.id, revision, commit, file: spec.file, size: got.size, sha256: got.sha256, localPath: got.localPath };
}

/** Finds every input file (downloading Hub files into the HF cache) and records exactly what was used. */
export async function resolveInputs(
  client: HubClient,
  recipe: Recipe,
  recipePath: string,
  lock: BuildLock | undefined,
  sink: ProgressSink,
  filter: FileFilter = () => true,
): Promise<Resolution> {
  const r = await resolveInputsOverlapped(client, recipe, recipePath, lock, sink, filter, false);
  await r.done;
  return r;
}

/** resolveInputs, with the Hub files downloading in the background when `overlap` (see OverlappedResolution). */
export async function resolveInputsOverlapped(
  client: HubClient,
  recipe: Recipe,
  recipePath: string,
  lock: BuildLock | undefined,
  sink: ProgressSink,
  filter: FileFilter = () => true,
  overlap = true,
): Promise<OverlappedResolution> {
  const recipeDir = dirname(recipePath);
  const tokenizer = await resolveTokenizer(client, recipe, recipeDir, lock?.tokenizer);
  // Every source is listed (local ones found) before anything is downloaded, so the disk check sees the whole download.
  type Found = { kind: "hf"; listing: HubListing } | { kind: "local"; files: ResolvedFile[] };
  const found: Found[] = [];
  const readers: ((file: number) => boolean)[] = [];
  let firstFile = 0; // the number of this source's first file over all sources
  for (const [sourceIndex, spec] of recipe.sources.entries()) {
    const locked = lock?.sources.find((s) => s.name === spec.name);
    if (lock && !locked) throw new UsageError(`source '${spec.name}' is not in the lock; rebuild without --locked to refresh it`);
    const first = firstFile;
    const reads = (j: number) => filter(first + j);
    readers.push(reads);
    if (spec.hf) {
      const listing = await listHub(client, spec, locked);
      found.push({ kind: "hf", listing });
      firstFile += listing.wanted.length;
      continue;
    }
    const files = await resolveLocal(spec, sourceIndex, recipeDir, sink, reads, locked);
    firstFile += files.length;
    if (locked) {
      const want = new Map(locked.files.map((f) => [f.path, f.sha256]));
      for (const f of files) {
        if (!f.inSlice && want.has(f.path)) continue;
        if (want.get(f.path) !== f.sha256) throw new RuntimeFailure(`source '${spec.name}': ${f.path} differs from the lock (sha256 ${f.sha256}); the locked build cannot be reproduced`);
      }
      if (files.length !== want.size) throw new RuntimeFailure(`source '${spec.name}': the local files differ from the lock's ${want.size} files`);
    }
    found.push({ kind: "local", files });
  }
  await checkDownloadSpace(
    client,
    found.flatMap((f, i) => (f.kind === "hf" ? [{ listing: f.listing, reads: readers[i]! }] : [])),
  );
  const { localPath: _t, ...lockedTokenizer } = tokenizer;
  const sources: ResolvedSource[] = [];
  const pending: { file: ResolvedFile; repo: RepoRef; commit: string; remote: HubListing["wanted"][number]; source: number; index: number; total: number }[] = [];
  for (const [index, spec] of recipe.sources.entries()) {
    const f = found[index]!;
    if (f.kind === "local") {
      sources.push({ spec, index, files: f.files });
      continue;
    }
    const { repo, commit, wanted } = f.listing;
    const reads = readers[index]!;
    const files = wanted.map((w, j): ResolvedFile => {
      const file: ResolvedFile = reads(j)
        ? { path: w.path, localPath: "", size: w.size, sha256: "", inSlice: true }
        : { path: w.path, localPath: "", size: w.size, sha256: w.sha256 ?? w.lfsSha256 ?? "", inSlice: false };
      if (file.inSlice) pending.push({ file, repo, commit, remote: w, source: index, index: j, total: wanted.length });
      return file;
    });
    sources.push({ spec, index, hf: { repo: spec.hf!.repo, revision: spec.hf!.revision, commit }, files });
  }
  const result: OverlappedResolution = {
    sources,
    tokenizer,
    lock: lockOf(lockedTokenizer, sources),
    ready: () => Promise.resolve(),
    done: Promise.resolve(),
    cancel: () => {},
  };
  // Each file's download as a promise, started in recipe order by a few workers.
  const settled = new Map<string, { promise: Promise<void>; resolve: () => void; reject: (e: unknown) => void }>();
  for (const p of pending) {
    let resolve!: () => void;
    let reject!: (e: unknown) => void;
    const promise = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
    promise.catch(() => {}); // awaited by ingest; a build that fails first must not see an unhandled rejection
    settled.set(`${p.source}/${p.index}`, { promise, resolve, reject });
  }
  let next = 0;
  let cancelled = false;
  const worker = async () => {
    while (!cancelled && next < pending.length) {
      const p = pending[next++]!;
      const entry = settled.get(`${p.source}/${p.index}`)!;
      try {
        const got = await client.download(p.repo, p.commit, { path: p.remote.path, size: p.remote.size, gitOid: p.remote.gitOid, lfsSha256: p.remote.lfsSha256 }, p.remote.sha256);
        Object.assign(p.file, { localPath: got.localPath, size: got.size, sha256: got.sha256 });
        if (!overlap) sink({ type: "stage_progress", stage: "download", done: p.index + 1, total: p.total, unit: "files", bytes: got.size });
        entry.resolve();
      } catch (error) {
        cancelled = true; // the build fails on this file: fetch nothing more
        entry.reject(error);
        for (const rest of pending.slice(next)) settled.get(`${rest.source}/${rest.index}`)!.reject(error);
        throw error;
      }
    }
  };
  const workers = Array.from({ length: Math.min(overlap ? DOWNLOADS_AT_ONCE : 1, pending.length) }, worker);
  result.done = Promise.all(workers).then(() => {
    if (cancelled) throw new Error("downloads cancelled");
    result.lock.sources = lockOf(lockedTokenizer, sources).sources;
  });
  result.done.catch(() => {});
  result.ready = (source, file) => settled.get(`${source}/${file}`)?.promise ?? Promise.resolve();
  result.cancel = () => {
    cancelled = true;
  };
  return result;
}

function lockOf(tokenizer: LockedTokenizer, sources: ResolvedSource[]): BuildLock {
  return {
    lock_version: 1,
    tokenizer,
    sources: sources.map((s) => ({
      name: s.spec.name,
      ...(s.hf ? { hf: s.hf } : { local: true as const }),
      files: s.files.map(({ path, size, sha256 }) => ({ path, size, sha256 })),
    })),
  };
}
