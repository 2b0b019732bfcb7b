import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, readdir, readFile, readlink, rename, rm, stat, symlink } from "node:fs/promises";
import { basename, dirname, join, relative } from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadableStream } from "node:stream/web";
import { datasetInfo, fileDownloadInfo, HubApiError, listFiles, modelInfo } from "@huggingface/hub";
import { tempPathFor, writeFileAtomic } from "../util/atomic.ts";
import { RuntimeFailure, UsageError, redactSecrets } from "../util/errors.ts";
import type { HubEnv } from "./env.ts";
import { StallError, timedFetch, TruncatedError, type Fetch } from "./http.ts";
import { assertInside, assertSafeRelativePath, COMMIT_SHA, GIT_OID, SHA256_HEX } from "./paths.ts";

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

/** Python's cache folder name: `datasets--org--name`. */
export function repoFolderName(repo: RepoRef): string {
  return [`${repo.type}s`, ...repo.id.split("/")].join("--");
}

function describe(repo: RepoRef): string {
  return `${repo.type} ${repo.id}`;
}

function isTransient(error: unknown): boolean {
  if (error instanceof HubApiError) return error.statusCode >= 500 || error.statusCode === 429;
  if (error instanceof IntegrityError || error instanceof StallError || error instanceof TruncatedError) return true;
  // fetch() rejects with a TypeError that has a cause on connection failures (a TypeError without one is a
  // programming or argument error, such as a malformed token, and retrying it cannot help); a body cut short
  // surfaces as "terminated" or a socket error.
  if (error instanceof TypeError) return (error as { cause?: unknown }).cause !== undefined || /terminated/.test(error.message);
  return /terminated|ECONNRESET|socket|premature|aborted|other side closed/i.test(String(error));
}

class IntegrityError extends Error {}

export interface HubClientOptions {
  retries?: number;
  backoffMs?: number;
  onRetry?: (what: string, attempt: number, error: string) => void;
  /** Bytes received so far of the file being downloaded, as they arrive. */
  onBytes?: (path: string, received: number, total: number) => void;
  /** Something the user should know, e.g. which cached revision an offline run used. */
  onNote?: (message: string) => void;
}

export class HubClient {
  private readonly fetch: Fetch;

  constructor(
    readonly env: HubEnv,
    private readonly options: HubClientOptions = {},
  ) {
    this.fetch = timedFetch(env.downloadTimeoutMs);
  }

  private credentials() {
    if (this.env.token && !this.env.token.startsWith("hf_")) {
      // The Hub client refuses such a token itself; say so once, as the user's to fix, instead of retrying it.
      throw new UsageError("HF_TOKEN does not look like a Hugging Face access token (they start with 'hf_'); fix or unset it");
    }
    return { hubUrl: this.env.endpoint, fetch: this.fetch, ...(this.env.token ? { accessToken: this.env.token } : {}) };
  }

  /** Turns the client's errors into messages that say what to do; never includes the token. */
  private explain(repo: RepoRef, what: string, error: unknown, attempts: number): Error {
    if (error instanceof UsageError || error instanceof RuntimeFailure) return error;
    const tries = attempts > 1 ? ` (${attempts} attempts)` : "";
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
      if (status === 429) return new RuntimeFailure(`${describe(repo)}: ${what}: the Hub is rate-limiting requests (HTTP 429)${tries}; wait and rerun, or set HF_TOKEN`);
      if (status >= 500) return new RuntimeFailure(`${describe(repo)}: ${what}: the Hub failed with HTTP ${status}${tries}; rerun later`);
      return new RuntimeFailure(`${describe(repo)}: ${what} was rejected with HTTP ${status}: ${redactSecrets(error.message.split(". URL:")[0] ?? "")}`);
    }
    if (error instanceof StallError) {
      return new RuntimeFailure(`${describe(repo)}: ${what}: ${error.message}${tries}; the connection stalled — check the network, or raise HF_HUB_DOWNLOAD_TIMEOUT (seconds)`);
    }
    if (error instanceof TruncatedError) return new RuntimeFailure(`${describe(repo)}: ${what}: ${error.message}${tries}; rerun to resume`);
    const cause = (error as { cause?: { code?: string; message?: string } })?.cause;
    if (error instanceof TypeError && cause && !/terminated/.test(error.message)) {
      return new RuntimeFailure(
        `${describe(repo)}: ${what}: cannot reach ${this.env.endpoint} (${cause.code ?? cause.message})${tries}; check the network, or HF_ENDPOINT / HF_HUB_OFFLINE`,
      );
    }
    if (isTransient(error)) {
      return new RuntimeFailure(`${describe(repo)}: ${what}: the connection dropped mid-transfer (${redactSecrets(String((error as Error)?.message ?? error))})${tries}; rerun to resume`);
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
          throw this.explain(repo, what, error, n + 1);
        }
        this.options.onRetry?.(`${describe(repo)}: ${what}`, n + 1, redactSecrets(String((error as Error)?.message ?? error)));
        await new Promise((r) => setTimeout(r, backoff * 2 ** n));
      }
    }
  }

  /** The Hugging Face cache this client downloads into (HF_HUB_CACHE, or HF_HOME/hub). */
  get cacheDir(): string {
    return this.env.cacheDir;
  }

  /** The cache folder of a repo, and a path inside it that must stay inside it. */
  private cachePath(repo: RepoRef, ...parts: string[]): string {
    const root = join(this.env.cacheDir, repoFolderName(repo));
    const path = join(root, ...parts);
    assertInside(root, path, `${describe(repo)}: ${parts.join("/")}`);
    return path;
  }

  /** Where a file of a commit lives in the cache (snapshots/<commit>/<path>), whether or not it is there yet. */
  snapshotFile(repo: RepoRef, commit: string, path: string): string {
    assertCommit(repo, commit);
    assertSafeRelativePath(path, describe(repo));
    return this.cachePath(repo, "snapshots", commit, path);
  }

  /** The cache's ref for a branch or tag (Python's layout: refs/<name> holds the commit sha). */
  private refPath(repo: RepoRef, revision: string): string | undefined {
    if (revision.split("/").some((s) => s === "" || s === "." || s === "..")) return undefined;
    return this.cachePath(repo, "refs", revision);
  }

  /** Resolves a branch, tag or commit to the commit sha, so builds pin exactly what they read. */
  async resolveRevision(repo: RepoRef, revision: string): Promise<string> {
    const refPath = this.refPath(repo, revision);
    if (this.env.offline) {
      if (COMMIT_SHA.test(revision)) return revision;
      const sha = refPath ? await readFile(refPath, "utf8").then((t) => t.trim(), () => undefined) : undefined;
      if (!sha || !COMMIT_SHA.test(sha)) {
        throw new RuntimeFailure(
          `${describe(repo)}@${revision}: HF_HUB_OFFLINE is set and the cache has no ref for this revision (${refPath ?? revision}); run once online or pin a commit sha`,
        );
      }
      this.options.onNote?.(`offline: ${describe(repo)}@${revision} is commit ${sha} in the cache (as last resolved online)`);
      return sha;
    }
    const info = await this.withRetries(repo, `resolving revision '${revision}'`, () => {
      const args = { name: repo.id, revision, additionalFields: ["sha"] as ["sha"], ...this.credentials() };
      return repo.type === "dataset" ? datasetInfo(args) : modelInfo(args);
    });
    const sha = (info as { sha?: string }).sha;
    if (!sha || !COMMIT_SHA.test(sha)) {
      throw new RuntimeFailure(`${describe(repo)}@${revision}: the Hub returned no commit sha for this revision`);
    }
    if (refPath && !COMMIT_SHA.test(revision)) await writeFileAtomic(refPath, sha);
    return sha;
  }

  async listFiles(repo: RepoRef, commit: string): Promise<RemoteFile[]> {
    assertCommit(repo, commit);
    if (this.env.offline) return this.listCachedFiles(repo, commit);
    return this.withRetries(repo, `listing files at ${commit.slice(0, 12)}`, async () => {
      const files: RemoteFile[] = [];
      for await (const entry of listFiles({ repo: { type: repo.type, name: repo.id }, revision: commit, recursive: true, ...this.credentials() })) {
        if (entry.type !== "file") continue;
        assertSafeRelativePath(entry.path, describe(repo));
        // The ids name cache files (blobs/<id>): anything but a hex digest of the right length is refused.
        if (entry.oid !== undefined && !GIT_OID.test(entry.oid)) throw hostile(repo, entry.path, "oid", entry.oid);
        if (entry.lfs && !SHA256_HEX.test(entry.lfs.oid)) throw hostile(repo, entry.path, "lfs.oid", entry.lfs.oid);
        if (!Number.isSafeInteger(entry.size) || entry.size < 0) throw hostile(repo, entry.path, "size", String(entry.size));
        files.push({ path: entry.path, size: entry.size, gitOid: entry.oid, lfsSha256: entry.lfs?.oid });
      }
      return files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    });
  }

  /**
   * Offline, the listing is the cached snapshot, as huggingface_hub reads it: each file links to its blob,
   * whose name is the content's id (sha256 for LFS files, the git blob id otherwise), so every file is still
   * checked against it when it is used.
   */
  private async listCachedFiles(repo: RepoRef, commit: string): Promise<RemoteFile[]> {
    const root = this.cachePath(repo, "snapshots", commit);
    const files: RemoteFile[] = [];
    const walk = async (dir: string): Promise<void> => {
      for (const entry of await readdir(dir, { withFileTypes: true })) {
        const path = join(dir, entry.name);
        if (entry.isDirectory()) {
          await walk(path);
          continue;
        }
        const size = (await stat(path).catch(() => undefined))?.size;
        if (size === undefined) continue; // a link whose blob is gone: not in the cache
        const id = basename(await readlink(path).catch(() => ""));
        const rel = relative(root, path).split("\\").join("/");
        files.push({ path: rel, size, gitOid: GIT_OID.test(id) && id.length === 40 ? id : undefined, lfsSha256: SHA256_HEX.test(id) ? id : undefined });
      }
    };
    try {
      await walk(root);
    } catch {
      throw new RuntimeFailure(`${describe(repo)}@${commit.slice(0, 12)}: HF_HUB_OFFLINE is set and the cache holds no snapshot of this commit (${root}); run once online`);
    }
    return files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  }

  /** One file by path at a commit: listed (for its size and hash), then downloaded and verified. */
  async fetchFile(repo: RepoRef, commit: string, path: string, expectedSha256?: string): Promise<DownloadedFile> {
    const entry = (await this.listFiles(repo, commit)).find((f) => f.path === path);
    if (!entry) throw new RuntimeFailure(`${describe(repo)}@${commit.slice(0, 12)} has no ${path}`);
    return this.download(repo, commit, entry, expectedSha256);
  }

  /**
   * Downloads one file into the Hugging Face cache layout (blobs/<etag>, snapshots/<commit>/<path> → blob),
   * verifying its content hash before it becomes visible; a cached file is re-hashed, not trusted.
   */
  async download(repo: RepoRef, commit: string, file: RemoteFile, expectedSha256?: string): Promise<DownloadedFile> {
    assertCommit(repo, commit);
    if (file.gitOid !== undefined && !GIT_OID.test(file.gitOid)) throw hostile(repo, file.path, "oid", file.gitOid);
    if (file.lfsSha256 !== undefined && !SHA256_HEX.test(file.lfsSha256)) throw hostile(repo, file.path, "lfs.oid", file.lfsSha256);
    if (expectedSha256 !== undefined && !SHA256_HEX.test(expectedSha256)) {
      throw new UsageError(`${describe(repo)}: ${file.path}: expected sha256 ${JSON.stringify(expectedSha256)} is not 64 hex digits`);
    }
    const pointer = this.snapshotFile(repo, commit, file.path);
    const wantSha256 = expectedSha256 ?? file.lfsSha256;
    const cached = await hashIfPresent(pointer);
    if (cached && (!wantSha256 || cached.sha256 === wantSha256) && (wantSha256 || !file.gitOid || cached.gitOid === file.gitOid)) {
      return { path: file.path, localPath: pointer, size: cached.size, sha256: cached.sha256 };
    }
    if (this.env.offline) {
      throw new RuntimeFailure(`${describe(repo)}: ${file.path} is not in the cache (${pointer}) and HF_HUB_OFFLINE is set`);
    }
    // Python's blob name is the etag: the sha256 for LFS files, the git blob id otherwise.
    const etag = wantSha256 ?? file.gitOid ?? createHash("sha256").update(`${commit}\0${file.path}`).digest("hex");
    const blobPath = this.cachePath(repo, "blobs", etag);
    await mkdir(dirname(blobPath), { recursive: true });
    const result = await this.withRetries(repo, `downloading ${file.path}`, async () => {
      const credentials = this.credentials();
      const info = await fileDownloadInfo({ repo: { type: repo.type, name: repo.id }, path: file.path, revision: commit, ...credentials });
      if (!info) throw new RuntimeFailure(`${describe(repo)}@${commit.slice(0, 12)}: ${file.path} is no longer served by the Hub`);
      // The body is fetched here rather than through the library's Blob, whose stream turns an HTTP error
      // into a bare string: the status decides whether to retry.
      const response = await this.fetch(info.url, credentials.accessToken ? { headers: { Authorization: `Bearer ${credentials.accessToken}` } } : {});
      if (!response.ok) {
        await response.body?.cancel();
        if (response.status === 404) throw new RuntimeFailure(`${describe(repo)}@${commit.slice(0, 12)}: ${file.path} is no longer served by the Hub (HTTP 404)`);
        throw new HubApiError(info.url, response.status, response.headers.get("X-Request-Id") ?? undefined, `HTTP ${response.status}`);
      }
      if (!response.body) throw new TruncatedError(`${file.path}: the response has no body`);
      const tmp = tempPathFor(blobPath);
      try {
        const hashes = await streamToFile(Readable.fromWeb(response.body as ReadableStream), tmp, file.size, (n) => this.options.onBytes?.(file.path, n, file.size));
        if (hashes.size < file.size) throw new TruncatedError(`${file.path}: the connection closed after ${hashes.size} of ${file.size} bytes`);
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
    await removeStalePartials(blobPath, 2 * this.env.downloadTimeoutMs);
    return { path: file.path, localPath: pointer, size: result.size, sha256: result.sha256 };
  }
}

function assertCommit(repo: RepoRef, commit: string): void {
  if (!COMMIT_SHA.test(commit)) {
    throw new UsageError(`${describe(repo)}: commit ${JSON.stringify(commit)} is not a 40-hex commit sha; fix the lock file or rebuild without --locked`);
  }
}

function hostile(repo: RepoRef, path: string, field: string, value: string): RuntimeFailure {
  return new RuntimeFailure(`${describe(repo)}: the Hub's listing gives ${path} the ${field} ${JSON.stringify(value)}, which is not a hex digest; refusing to use it`);
}

/**
 * Temp files of this blob that a killed download left behind. A live download writes at least once per
 * timeout or aborts itself, so a partial file untouched for twice that long belongs to no live process.
 */
async function removeStalePartials(blobPath: string, idleMs: number): Promise<void> {
  const dir = dirname(blobPath);
  const prefix = basename(blobPath) + ".";
  const now = Date.now();
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (!name.startsWith(prefix) || !name.endsWith(".tmp")) continue;
    const path = join(dir, name);
    const info = await stat(path).catch(() => undefined);
    if (info && now - info.mtimeMs > idleMs) await rm(path, { force: true });
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

async function streamToFile(source: Readable, path: string, expectedSize: number, onBytes?: (received: number) => void): Promise<FileHashes> {
  const h = hasher(expectedSize);
  let received = 0;
  let reported = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _enc, done) {
      h.update(chunk);
      received += chunk.length;
      if (onBytes && received - reported >= 1 << 20) {
        reported = received;
        onBytes(received);
      }
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
