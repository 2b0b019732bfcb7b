import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, readFile, readlink, rename, rm, stat, symlink } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadableStream } from "node:stream/web";
import { datasetInfo, downloadFile, HubApiError, listFiles, modelInfo } from "@huggingface/hub";
import { tempPathFor, writeFileAtomic } from "../util/atomic.ts";
import { RuntimeFailure, UsageError, redactSecrets } from "../util/errors.ts";
import type { HubEnv } from "./env.ts";
import { assertSafeRelativePath } from "./paths.ts";

export type RepoType = "dataset" | "model";

export interface RepoRef {
  type: RepoType;
  id: string;
}

export interface RemoteFile {
  path: string;
  size: number;
  /** git blob sha1 of the file as committed (for LFS files, of its pointer). */
  gitOid: string | undefined;
  /** sha256 of the content, known up front for LFS files. */
  lfsSha256: string | undefined;
}

export interface DownloadedFile {
  path: string;
  localPath: string;
  size: number;
  sha256: string;
}

const COMMIT_SHA = /^[0-9a-f]{40}$/;

/** Python's cache folder name: `datasets--org--name`. */
export function repoFolderName(repo: RepoRef): string {
  return [`${repo.type}s`, ...repo.id.split("/")].join("--");
}

function describe(repo: RepoRef): string {
  return `${repo.type} ${repo.id}`;
}

function isTransient(error: unknown): boolean {
  if (error instanceof HubApiError) return error.statusCode >= 500 || error.statusCode === 429;
  if (error instanceof IntegrityError) return true;
  // fetch() rejects with TypeError on connection failures; a body stream cut short surfaces as other errors.
  return error instanceof TypeError || /terminated|ECONNRESET|socket|premature|aborted|other side closed/i.test(String(error));
}

class IntegrityError extends Error {}

export class HubClient {
  constructor(
    readonly env: HubEnv,
    private readonly options: { retries?: number; backoffMs?: number; onRetry?: (what: string, attempt: number, error: string) => void } = {},
  ) {}

  private credentials() {
    return { hubUrl: this.env.endpoint, ...(this.env.token ? { accessToken: this.env.token } : {}) };
  }

  /** Turns the client's errors into messages that say what to do; never includes the token. */
  private explain(repo: RepoRef, what: string, error: unknown): Error {
    if (error instanceof UsageError || error instanceof RuntimeFailure) return error;
    if (error instanceof HubApiError) {
      const status = error.statusCode;
      if (status === 401 || status === 403) {
        return new RuntimeFailure(
          `${describe(repo)}: ${what} was refused (HTTP ${status}); the repo is private or gated: ` +
            (this.env.token ? "HF_TOKEN is set but lacks access to it" : "set HF_TOKEN to a token with access"),
        );
      }
      if (status === 404) {
        return new RuntimeFailure(
          `${describe(repo)}: ${what}: not found (HTTP 404) at ${this.env.endpoint}; check the repo id and revision` +
            (this.env.token ? "" : ", or set HF_TOKEN if it is private"),
        );
      }
      return new RuntimeFailure(`${describe(repo)}: ${what} failed with HTTP ${status} after retries`);
    }
    const cause = (error as { cause?: { code?: string; message?: string } })?.cause;
    if (error instanceof TypeError && cause) {
      return new RuntimeFailure(
        `${describe(repo)}: ${what}: cannot reach ${this.env.endpoint} (${cause.code ?? cause.message}); check the network, or HF_ENDPOINT / HF_HUB_OFFLINE`,
      );
    }
    return new RuntimeFailure(`${describe(repo)}: ${what} failed: ${redactSecrets(String((error as Error)?.message ?? error))}`);
  }

  private async withRetries<T>(repo: RepoRef, what: string, attempt: () => Promise<T>): Promise<T> {
    const retries = this.options.retries ?? 4;
    const backoff = this.options.backoffMs ?? 250;
    for (let n = 0; ; n++) {
      try {
        return await attempt();
      } catch (error) {
        if (n >= retries || !isTransient(error)) {
          if (error instanceof IntegrityError) throw new RuntimeFailure(`${describe(repo)}: ${error.message}`);
          throw this.explain(repo, what, error);
        }
        this.options.onRetry?.(`${describe(repo)}: ${what}`, n + 1, redactSecrets(String((error as Error)?.message ?? error)));
        await new Promise((r) => setTimeout(r, backoff * 2 ** n));
      }
    }
  }

  /** Resolves a branch, tag or commit to the commit sha, so builds pin exactly what they read. */
  async resolveRevision(repo: RepoRef, revision: string): Promise<string> {
    const refPath = join(this.env.cacheDir, repoFolderName(repo), "refs", revision);
    if (this.env.offline) {
      if (COMMIT_SHA.test(revision)) return revision;
      try {
        return (await readFile(refPath, "utf8")).trim();
      } catch {
        throw new RuntimeFailure(
          `${describe(repo)}@${revision}: HF_HUB_OFFLINE is set and the cache has no ref for this revision (${refPath}); run once online or pin a commit sha`,
        );
      }
    }
    const info = await this.withRetries(repo, `resolving revision '${revision}'`, () => {
      const args = { name: repo.id, revision, additionalFields: ["sha"] as ["sha"], ...this.credentials() };
      return repo.type === "dataset" ? datasetInfo(args) : modelInfo(args);
    });
    const sha = (info as { sha?: string }).sha;
    if (!sha || !COMMIT_SHA.test(sha)) {
      throw new RuntimeFailure(`${describe(repo)}@${revision}: the Hub returned no commit sha for this revision`);
    }
    if (!COMMIT_SHA.test(revision) && !revision.includes("..")) {
      await writeFileAtomic(refPath, sha);
    }
    return sha;
  }

  async listFiles(repo: RepoRef, commit: string): Promise<RemoteFile[]> {
    return this.withRetries(repo, `listing files at ${commit.slice(0, 12)}`, async () => {
      const files: RemoteFile[] = [];
      for await (const entry of listFiles({ repo: { type: repo.type, name: repo.id }, revision: commit, recursive: true, ...this.credentials() })) {
        if (entry.type !== "file") continue;
        assertSafeRelativePath(entry.path, describe(repo));
        files.push({ path: entry.path, size: entry.size, gitOid: entry.oid, lfsSha256: entry.lfs?.oid });
      }
      return files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    });
  }

  /** One file by path at a commit: listed (for its size and hash), then downloaded and verified. */
  async fetchFile(repo: RepoRef, commit: string, path: string, expectedSha256?: string): Promise<DownloadedFile> {
    const entry = (await this.listFiles(repo, commit)).find((f) => f.path === path);
    if (!entry) throw new RuntimeFailure(`${describe(repo)}@${commit.slice(0, 12)} has no ${path}`);
    return this.download(repo, commit, entry, expectedSha256);
  }

  private snapshotPath(repo: RepoRef, commit: string, path: string): string {
    return join(this.env.cacheDir, repoFolderName(repo), "snapshots", commit, path);
  }

  /**
   * Downloads one file into the Hugging Face cache layout (blobs/<etag>, snapshots/<commit>/<path> → blob),
   * verifying its content hash before it becomes visible; a cached file is re-hashed, not trusted.
   */
  async download(repo: RepoRef, commit: string, file: RemoteFile, expectedSha256?: string): Promise<DownloadedFile> {
    assertSafeRelativePath(file.path, describe(repo));
    const pointer = this.snapshotPath(repo, commit, file.path);
    const wantSha256 = expectedSha256 ?? file.lfsSha256;
    const cached = await hashIfPresent(pointer);
    if (cached && (!wantSha256 || cached.sha256 === wantSha256) && (wantSha256 || !file.gitOid || cached.gitOid === file.gitOid)) {
      return { path: file.path, localPath: pointer, size: cached.size, sha256: cached.sha256 };
    }
    if (this.env.offline) {
      throw new RuntimeFailure(`${describe(repo)}: ${file.path} is not in the cache (${pointer}) and HF_HUB_OFFLINE is set`);
    }
    const etag = file.lfsSha256 ?? file.gitOid ?? commit + "-" + file.path.replace(/\//g, "_");
    const blobPath = join(this.env.cacheDir, repoFolderName(repo), "blobs", etag);
    await mkdir(dirname(blobPath), { recursive: true });
    const result = await this.withRetries(repo, `downloading ${file.path}`, async () => {
      const blob = await downloadFile({ repo: { type: repo.type, name: repo.id }, path: file.path, revision: commit, ...this.credentials() });
      if (!blob) throw new RuntimeFailure(`${describe(repo)}@${commit.slice(0, 12)}: ${file.path} is no longer served by the Hub`);
      const tmp = tempPathFor(blobPath);
      try {
        const hashes = await streamToFile(Readable.fromWeb(blob.stream() as ReadableStream), tmp, file.size);
        if (hashes.size !== file.size) throw new IntegrityError(`${file.path}: got ${hashes.size} bytes, the listing says ${file.size}`);
        if (wantSha256 && hashes.sha256 !== wantSha256) {
          throw new IntegrityError(`${file.path}: sha256 ${hashes.sha256} does not match the expected ${wantSha256}`);
        }
        if (!wantSha256 && file.gitOid && hashes.gitOid !== file.gitOid) {
          throw new IntegrityError(`${file.path}: git blob id ${hashes.gitOid} does not match the listing's ${file.gitOid}`);
        }
        await rename(tmp, blobPath);
        return hashes;
      } catch (error) {
        await rm(tmp, { force: true });
        throw error;
      }
    });
    await linkAtomic(blobPath, pointer);
    return { path: file.path, localPath: pointer, size: result.size, sha256: result.sha256 };
  }
}

async function linkAtomic(target: string, link: string): Promise<void> {
  await mkdir(dirname(link), { recursive: true });
  const relativeTarget = relative(dirname(link), target);
  try {
    if ((await readlink(link)) === relativeTarget) return;
  } catch {
    /* absent or not a link */
  }
  const tmp = tempPathFor(link);
  await symlink(relativeTarget, tmp);
  await rename(tmp, link);
}

interface FileHashes {
  size: number;
  sha256: string;
  gitOid: string;
}

/** sha256 and git's blob id in one pass; git's header needs the size up front, which the listing gives. */
function hasher(expectedSize: number) {
  const sha = createHash("sha256");
  const git = createHash("sha1").update(`blob ${expectedSize}\0`);
  let size = 0;
  return {
    update(chunk: Buffer) {
      sha.update(chunk);
      git.update(chunk);
      size += chunk.length;
    },
    digest(): FileHashes {
      return { size, sha256: sha.digest("hex"), gitOid: size === expectedSize ? git.digest("hex") : "" };
    },
  };
}

async function streamToFile(source: Readable, path: string, expectedSize: number): Promise<FileHashes> {
  const h = hasher(expectedSize);
  const tap = new Transform({
    transform(chunk: Buffer, _enc, done) {
      h.update(chunk);
      done(null, chunk);
    },
  });
  await pipeline(source, tap, createWriteStream(path));
  return h.digest();
}

async function hashIfPresent(path: string): Promise<FileHashes | undefined> {
  let size: number;
  try {
    size = (await stat(path)).size;
  } catch {
    return undefined;
  }
  const h = hasher(size);
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest();
}
