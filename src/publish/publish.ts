/**
 * Puts a release on the Hub: the repo created if absent, each branch's files compared with what the branch
 * holds (sha256 for LFS files, git blob ids otherwise) so only what differs is uploaded, in commits within the
 * Hub's limits, the card in the last one. A rerun uploads nothing; a killed run resumes where its commits
 * stopped. What holds other content is refused unless forced.
 */
import type { RemoteFile, RepoRef } from "../hub/client.ts";
import type { HubUploader, LocalUpload } from "../hub/upload.ts";
import { RuntimeFailure, UsageError } from "../util/errors.ts";
import type { ReleaseBranch, ReleaseFile } from "./release.ts";

export type PublishEvent =
  | { type: "plan"; branch: string; files: number; bytes: number; upload: string[]; upload_bytes: number; exists: boolean }
  | { type: "upload"; branch: string; path: string; sent: number; total: number }
  | { type: "commit"; branch: string; files: number; url: string }
  | { type: "unchanged"; branch: string; commit: string }
  | { type: "note"; message: string };

export interface PublishOptions {
  private: boolean;
  /** replace a branch that holds other content (its other files are deleted) */
  force: boolean;
  dryRun: boolean;
  /** the Hub's advice is at most a few hundred files and some GB per commit; LFS files at most 50 GB */
  maxFilesPerCommit?: number;
  maxBytesPerCommit?: number;
  onEvent: (e: PublishEvent) => void;
}

const MAX_FILE_BYTES = 50 * 1000 ** 3;
const repoUrl = (endpoint: string, repo: RepoRef) => `${endpoint}/${repo.type === "dataset" ? "datasets/" : ""}${repo.id}`;

function same(local: ReleaseFile, remote: RemoteFile | undefined): boolean {
  return !!remote && remote.size === local.size && (remote.lfsSha256 ? remote.lfsSha256 === local.sha256 : remote.gitOid === local.gitOid);
}

/** Commits of at most maxFiles files and maxBytes bytes (a larger file alone), in order. */
export function commitBatches(files: ReleaseFile[], maxFiles: number, maxBytes: number): ReleaseFile[][] {
  const out: ReleaseFile[][] = [];
  let current: ReleaseFile[] = [];
  let bytes = 0;
  for (const f of files) {
    if (current.length > 0 && (current.length >= maxFiles || bytes + f.size > maxBytes)) out.push(current), (current = []), (bytes = 0);
    current.push(f);
    bytes += f.size;
  }
  if (current.length > 0) out.push(current);
  return out;
}

const toUpload = (f: ReleaseFile): LocalUpload => ({ path: f.path, source: f.source, size: f.size });

export async function publish(uploader: HubUploader, repo: RepoRef, branches: ReleaseBranch[], o: PublishOptions): Promise<{ commits: string[] }> {
  for (const b of branches) {
    const big = b.files.find((f) => f.size > MAX_FILE_BYTES);
    if (big) throw new UsageError(`${big.path} is ${big.size.toLocaleString("en-US")} bytes; the Hub takes files of at most 50 GB: rebuild with smaller shards (--max-shard-bytes)`);
  }
  if (!o.dryRun) {
    const account = await uploader.checkToken();
    o.onEvent({ type: "note", message: `publishing to ${repoUrl(uploader.env.endpoint, repo)} as ${account}` });
  }
  let exists = (await headOf(uploader, repo, "main", o)) !== undefined;
  if (!exists) {
    if (o.dryRun) o.onEvent({ type: "note", message: `${repoUrl(uploader.env.endpoint, repo)} does not exist (or is private); it would be created${o.private ? " (private)" : ""}` });
    else {
      await uploader.createRepo(repo, o.private);
      exists = true;
      o.onEvent({ type: "note", message: `created ${repoUrl(uploader.env.endpoint, repo)}${o.private ? " (private)" : ""}` });
    }
  }
  const commits: string[] = [];
  for (const b of branches) {
    const head = exists ? await headOf(uploader, repo, b.branch, o) : undefined;
    const remote = head ? await uploader.listFiles(repo, head) : [];
    const byPath = new Map(remote.map((f) => [f.path, f]));
    const ours = new Map([...b.files, b.card].map((f) => [f.path, f]));
    // Other content: files this release does not have, or its own files with other bytes (a card may change).
    const foreign = remote.filter((f) => f.path !== ".gitattributes" && !ours.has(f.path));
    const differing = b.files.filter((f) => byPath.has(f.path) && !same(f, byPath.get(f.path)));
    if ((foreign.length > 0 || differing.length > 0) && !o.force) {
      const what = [...differing.map((f) => `${f.path} differs`), ...foreign.map((f) => `${f.path} is not part of this release`)];
      throw new UsageError(
        `${repoUrl(uploader.env.endpoint, repo)}@${b.branch} holds other content (${what.slice(0, 5).join("; ")}${what.length > 5 ? `; and ${what.length - 5} more` : ""}); ` +
          `publish to another --revision, or pass --force to replace it`,
      );
    }
    const missing = b.files.filter((f) => !same(f, byPath.get(f.path)));
    const cardChanged = !same(b.card, byPath.get(b.card.path));
    const uploadBytes = missing.reduce((a, f) => a + f.size, 0) + (cardChanged ? b.card.size : 0);
    o.onEvent({
      type: "plan",
      branch: b.branch,
      files: b.files.length + 1,
      bytes: b.files.reduce((a, f) => a + f.size, 0) + b.card.size,
      upload: [...missing, ...(cardChanged ? [b.card] : [])].map((f) => f.path),
      upload_bytes: uploadBytes,
      exists: head !== undefined,
    });
    if (o.dryRun) continue;
    if (missing.length === 0 && !cardChanged && foreign.length === 0) {
      o.onEvent({ type: "unchanged", branch: b.branch, commit: head! });
      continue;
    }
    if (!head) await uploader.createBranch(repo, b.branch, { empty: true });
    const parts = commitBatches(missing, o.maxFilesPerCommit ?? 50, o.maxBytesPerCommit ?? 8 * 1024 ** 3);
    // The card rides in the last commit (alone when only it changed): until it lands, nothing claims the release is whole.
    if (parts.length === 0) parts.push([]);
    for (const [i, part] of parts.entries()) {
      const last = i === parts.length - 1;
      const files = last && cardChanged ? [...part, b.card] : part;
      const remove = i === 0 ? foreign.map((f) => f.path) : [];
      if (files.length === 0 && remove.length === 0) continue;
      const title = parts.length > 1 ? `${b.title} (${i + 1} of ${parts.length})` : b.title;
      const commit = await uploader.commit(repo, b.branch, title, files.map(toUpload), remove, (p) =>
        o.onEvent({ type: "upload", branch: b.branch, path: p.path, sent: p.sent, total: p.total }),
      );
      commits.push(commit.url);
      o.onEvent({ type: "commit", branch: b.branch, files: files.length, url: commit.url });
    }
  }
  return { commits };
}

/** A branch's head; a dry run without access says so and treats the repo as empty. */
async function headOf(uploader: HubUploader, repo: RepoRef, branch: string, o: PublishOptions): Promise<string | undefined> {
  try {
    return await uploader.branchHead(repo, branch);
  } catch (error) {
    if (o.dryRun && error instanceof RuntimeFailure && /HTTP 40[13]/.test(error.message)) {
      o.onEvent({ type: "note", message: `cannot read ${repo.id}@${branch} without a token; listing every file as new` });
      return undefined;
    }
    throw error;
  }
}
