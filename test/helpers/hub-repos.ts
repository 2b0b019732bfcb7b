/**
 * The loopback Hub's repositories: commits (each a full file list), branches pointing at commits, and the bytes
 * of every file, read from ../shared/hub's folders (one commit on main) or pushed through the write API.
 */
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative, sep } from "node:path";

export interface RepoFile {
  path: string;
  size: number;
  sha256: string;
  gitOid: string;
  lfs: boolean;
  content: () => Buffer;
}

export interface Commit {
  sha: string;
  title: string;
  files: RepoFile[];
}

export interface Repo {
  type: "dataset" | "model";
  id: string;
  private: boolean;
  branches: Map<string, string>;
  commits: Map<string, Commit>;
}

export function gitOid(content: Buffer): string {
  return createHash("sha1").update(`blob ${content.length}\0`).update(content).digest("hex");
}

export function sha256(content: Buffer): string {
  return createHash("sha256").update(content).digest("hex");
}

export function fileOf(path: string, content: Buffer | (() => Buffer), size: number, lfs: boolean, hashes?: { sha256: string; gitOid: string }): RepoFile {
  const read = typeof content === "function" ? content : () => content;
  const bytes = hashes ? undefined : read();
  return { path, size, lfs, sha256: hashes?.sha256 ?? sha256(bytes!), gitOid: hashes?.gitOid ?? gitOid(bytes!), content: read };
}

function walk(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...walk(p));
    else if (entry.isFile()) out.push(p);
  }
  return out;
}

/** A fixture folder as a repo with one commit on main (its sha derived from the files, so it is stable). */
export function loadRepo(root: string, type: "dataset" | "model", id: string): Repo | undefined {
  const dir = join(root, `${type}s`, ...id.split("/"));
  if (!existsSync(dir) || !statSync(dir).isDirectory()) return undefined;
  const files = walk(dir)
    .map((absPath) => {
      const content = readFileSync(absPath);
      const path = relative(dir, absPath).split(sep).join("/");
      // As on the Hub: data and tokenizer files live in LFS, cards in git.
      return fileOf(path, () => readFileSync(absPath), content.length, !/\.(md|gitattributes)$/.test(path), { sha256: sha256(content), gitOid: gitOid(content) });
    })
    .sort((a, b) => (a.path < b.path ? -1 : 1));
  const sha = createHash("sha1")
    .update(id + "\n" + files.map((f) => `${f.path} ${f.sha256}`).join("\n"))
    .digest("hex");
  const branches = new Map([["main", sha], ...(EXTRA_BRANCHES[`${type}s/${id}`] ?? []).map((b) => [b, sha] as [string, string])]);
  return { type, id, private: false, branches, commits: new Map([[sha, { sha, title: "fixture", files }]]) };
}

/**
 * Branches a fixture also answers to. haonan-li/cmmlu keeps its parquet only on the Hub's parquet-export branch
 * (`refs/convert/parquet`); the stand-in holds those files on main (FIXTURES.md), so that branch names the same commit.
 */
const EXTRA_BRANCHES: Record<string, string[]> = { "datasets/haonan-li/cmmlu": ["refs/convert/parquet"] };

/** The commit a revision names: a branch, "HEAD" (main) or a commit sha. */
export function resolveRevision(repo: Repo, revision: string): Commit | undefined {
  const sha = repo.branches.get(revision === "HEAD" ? "main" : revision) ?? (repo.commits.has(revision) ? revision : undefined);
  return sha ? repo.commits.get(sha) : undefined;
}

/** A new commit on a branch: the parent's files with these changes; its sha depends on its parent and content. */
export function addCommit(repo: Repo, branch: string, title: string, changes: { put: RepoFile[]; remove: string[] }): Commit {
  const parent = resolveRevision(repo, branch);
  const byPath = new Map((parent?.files ?? []).map((f) => [f.path, f]));
  for (const path of changes.remove) {
    byPath.delete(path);
    for (const p of [...byPath.keys()]) if (p.startsWith(path.replace(/\/?$/, "/"))) byPath.delete(p);
  }
  for (const f of changes.put) byPath.set(f.path, f);
  const files = [...byPath.values()].sort((a, b) => (a.path < b.path ? -1 : 1));
  const sha = createHash("sha1")
    .update(`${parent?.sha ?? ""}\n${title}\n${files.map((f) => `${f.path} ${f.sha256}`).join("\n")}`)
    .digest("hex");
  const commit = { sha, title, files };
  repo.commits.set(sha, commit);
  repo.branches.set(branch, sha);
  return commit;
}
