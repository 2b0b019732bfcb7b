import { readdir, readlink, realpath, stat } from "node:fs/promises";
import { dirname, isAbsolute, join, relative, resolve, sep } from "node:path";
import type { HubClient, RemoteFile, RepoRef } from "../hub/client.ts";
import { globToRegExp } from "../hub/paths.ts";
import { DEFAULT_TOKENIZER_REPO, type Recipe, type SourceSpec } from "../recipe/schema.ts";
import { RuntimeFailure, UsageError } from "../util/errors.ts";
import { sha256File } from "../util/hash.ts";
import type { BuildLock, LockedFile, LockedSource, LockedTokenizer } from "./lock.ts";
import type { ProgressSink } from "./progress.ts";

export interface ResolvedFile extends LockedFile {
  localPath: string;
}

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
 * Every file under `dir`, following symbolic links (a linked folder is walked, once); a link whose target
 * is missing is an error naming it, not a raw ENOENT later.
 */
async function walkFiles(dir: string, where: string, seen = new Set<string>()): Promise<string[]> {
  const out: string[] = [];
  let entries;
  try {
    const real = await realpath(dir);
    if (seen.has(real)) return out; // a link cycle
    seen.add(real);
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    let isDir = e.isDirectory();
    let isFile = e.isFile();
    if (e.isSymbolicLink()) {
      const target = await stat(p).catch(() => undefined);
      if (!target) throw new UsageError(`${where}: ${p} is a symbolic link to a missing file (${await readlink(p).catch(() => "?")}); fix or remove the link`);
      isDir = target.isDirectory();
      isFile = target.isFile();
    }
    if (isDir) out.push(...(await walkFiles(p, where, seen)));
    else if (isFile) out.push(p);
  }
  return out;
}

/** The folder part of a glob before its first wildcard, so only that subtree is walked. */
function staticPrefix(glob: string): string {
  const parts = glob.split("/");
  const fixed: string[] = [];
  for (const p of parts.slice(0, -1)) {
    if (/[*?{[]/.test(p)) break;
    fixed.push(p);
  }
  return fixed.join("/");
}

async function resolveLocal(spec: SourceSpec, recipeDir: string, sink: ProgressSink): Promise<ResolvedFile[]> {
  const found = new Map<string, string>();
  for (const glob of spec.local!.files) {
    const base = resolve(recipeDir, staticPrefix(glob));
    const regex = globToRegExp(resolve(recipeDir, glob).split(sep).join("/"));
    for (const file of await walkFiles(base, `source '${spec.name}'`)) {
      const normalized = file.split(sep).join("/");
      if (regex.test(normalized)) found.set(relative(recipeDir, file).split(sep).join("/"), file);
    }
  }
  if (found.size === 0) {
    throw new UsageError(`source '${spec.name}': local.files ${JSON.stringify(spec.local!.files)} match no file under ${recipeDir}`);
  }
  const outside = [...found.keys()].filter((p) => p.startsWith("../") || isAbsolute(p));
  if (outside.length > 0) {
    sink({
      type: "note",
      stage: "download",
      message: `source '${spec.name}': ${outside.length} file(s) outside the recipe's folder ${recipeDir} (${outside.slice(0, 3).join(", ")}${outside.length > 3 ? ", …" : ""}); the lock and manifest record them as given`,
    });
  }
  const files: ResolvedFile[] = [];
  for (const [path, localPath] of [...found].sort(([a], [b]) => (a < b ? -1 : 1))) {
    files.push({ path, localPath, size: (await stat(localPath)).size, sha256: await sha256File(localPath) });
  }
  return files;
}

async function resolveHub(
  client: HubClient,
  spec: SourceSpec,
  locked: LockedSource | undefined,
  sink: ProgressSink,
): Promise<{ hf: ResolvedSource["hf"]; files: ResolvedFile[] }> {
  const repo: RepoRef = { type: "dataset", id: spec.hf!.repo };
  if (locked) {
    if (!locked.hf || locked.hf.repo !== spec.hf!.repo) {
      throw new UsageError(`source '${spec.name}': the lock names ${locked.hf?.repo ?? "a local source"}, the recipe ${spec.hf!.repo}; rebuild without --locked to refresh the lock`);
    }
  }
  const commit = locked?.hf?.commit ?? (await client.resolveRevision(repo, spec.hf!.revision));
  let wanted: { path: string; size: number; gitOid?: string; lfsSha256?: string; sha256?: string }[];
  if (locked) {
    wanted = locked.files.map((f) => ({ path: f.path, size: f.size, sha256: f.sha256 }));
  } else {
    const listing = await client.listFiles(repo, commit);
    const regexes = spec.hf!.files.map(globToRegExp);
    wanted = listing.filter((f) => regexes.some((r) => r.test(f.path)));
    if (wanted.length === 0) {
      const sample = listing.slice(0, 12).map((f) => f.path).join(", ");
      throw new UsageError(`source '${spec.name}': hf.files ${JSON.stringify(spec.hf!.files)} match no file in ${spec.hf!.repo}@${commit.slice(0, 12)} (it has: ${sample})`);
    }
  }
  const files: ResolvedFile[] = [];
  for (const [i, f] of wanted.entries()) {
    const got = await client.download(
      repo,
      commit,
      { path: f.path, size: f.size, gitOid: f.gitOid, lfsSha256: f.lfsSha256 },
      f.sha256,
    );
    files.push({ path: f.path, localPath: got.localPath, size: got.size, sha256: got.sha256 });
    sink({ type: "stage_progress", stage: "download", done: i + 1, total: wanted.length, unit: "files", bytes: got.size });
  }
  return { hf: { repo: spec.hf!.repo, revision: spec.hf!.revision, commit }, files };
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
): Promise<Resolution> {
  const recipeDir = dirname(recipePath);
  const tokenizer = await resolveTokenizer(client, recipe, recipeDir, lock?.tokenizer);
  const sources: ResolvedSource[] = [];
  for (const [index, spec] of recipe.sources.entries()) {
    const locked = lock?.sources.find((s) => s.name === spec.name);
    if (lock && !locked) throw new UsageError(`source '${spec.name}' is not in the lock; rebuild without --locked to refresh it`);
    if (spec.hf) {
      const { hf, files } = await resolveHub(client, spec, locked, sink);
      sources.push({ spec, index, hf, files });
    } else {
      const files = await resolveLocal(spec, recipeDir, sink);
      if (locked) {
        const want = new Map(locked.files.map((f) => [f.path, f.sha256]));
        for (const f of files) {
          if (want.get(f.path) !== f.sha256) throw new RuntimeFailure(`source '${spec.name}': ${f.path} differs from the lock (sha256 ${f.sha256}); the locked build cannot be reproduced`);
        }
        if (files.length !== want.size) throw new RuntimeFailure(`source '${spec.name}': the local files differ from the lock's ${want.size} files`);
      }
      sources.push({ spec, index, files });
    }
  }
  const { localPath: _t, ...lockedTokenizer } = tokenizer;
  return {
    sources,
    tokenizer,
    lock: {
      lock_version: 1,
      tokenizer: lockedTokenizer,
      sources: sources.map((s) => ({
        name: s.spec.name,
        ...(s.hf ? { hf: s.hf } : { local: true as const }),
        files: s.files.map(({ path, size, sha256 }) => ({ path, size, sha256 })),
      })),
    },
  };
}
