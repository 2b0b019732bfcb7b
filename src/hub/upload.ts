/**
 * Writing to the Hub through `@huggingface/hub`: the token's check, repo creation, branches, and commits of local
 * files (LFS as the Hub decides), with byte progress and retries of transient failures. Reads (what a branch
 * holds) go through HubClient, so both honour HF_ENDPOINT and HF_TOKEN alike; the token never reaches a message.
 */
import { openAsBlob } from "node:fs";
import { commitIter, createBranch, createRepo, HubApiError, whoAmI, type CommitOperation } from "@huggingface/hub";
import { RuntimeFailure, UsageError, redactSecrets } from "../util/errors.ts";
import { HubClient, type RemoteFile, type RepoRef } from "./client.ts";
import type { HubEnv } from "./env.ts";

export interface LocalUpload {
  /** path in the repo */
  path: string;
  /** file on disk, or the bytes themselves */
  source: string | Uint8Array;
  size: number;
}

export interface UploadProgress {
  /** bytes of this commit's files sent so far, and in all */
  sent: number;
  total: number;
  path: string;
}

const describe = (repo: RepoRef) => `${repo.type === "dataset" ? "datasets/" : ""}${repo.id}`;

/**
 * fetch with a deadline per request: HF_HUB_DOWNLOAD_TIMEOUT plus 1 s per MB the request sends, so an upload
 * whose connection stalls fails (and is retried) instead of waiting forever, while a slow link still gets
 * through at 1 MB/s.
 */
function deadlineFetch(baseMs: number): typeof fetch {
  return async (input, init) => {
    const body = init?.body as unknown;
    const size = body instanceof Blob ? body.size : ArrayBuffer.isView(body) ? body.byteLength : body instanceof ArrayBuffer ? body.byteLength : typeof body === "string" ? body.length : 0;
    // A controller and a timer of our own: Node 20's AbortSignal.any() can be collected before it fires.
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new DOMException("the request got no answer in time", "TimeoutError")), Math.ceil(baseMs + size / 1e3));
    const outer = init?.signal;
    const forward = () => controller.abort(outer?.reason);
    if (outer?.aborted) forward();
    else outer?.addEventListener("abort", forward, { once: true });
    try {
      return await fetch(input, { ...init, signal: controller.signal });
    } finally {
      clearTimeout(timer);
      outer?.removeEventListener("abort", forward);
    }
  };
}

export class HubUploader {
  readonly client: HubClient;

  constructor(
    readonly env: HubEnv,
    private readonly options: { retries?: number; backoffMs?: number; onRetry?: (what: string, attempt: number, error: string) => void } = {},
  ) {
    this.client = new HubClient(env, { retries: 2, backoffMs: options.backoffMs });
  }

  private credentials() {
    const token = this.env.token;
    if (!token) throw new UsageError("publishing needs HF_TOKEN: a Hugging Face access token with write access (huggingface.co/settings/tokens); --dry-run works without one");
    if (!token.startsWith("hf_")) throw new UsageError("HF_TOKEN does not look like a Hugging Face access token (they start with 'hf_'); fix or unset it");
    return { hubUrl: this.env.endpoint, accessToken: token, fetch: deadlineFetch(this.env.downloadTimeoutMs) };
  }

  /** Fails early, with a plain message, when the Hub does not take the token. Returns the account name. */
  async checkToken(): Promise<string> {
    try {
      const me = await whoAmI(this.credentials());
      return (me as { name?: string }).name ?? "?";
    } catch (error) {
      if (error instanceof UsageError) throw error;
      if (error instanceof HubApiError && (error.statusCode === 401 || error.statusCode === 403)) {
        throw new RuntimeFailure(`${this.env.endpoint} refused HF_TOKEN (HTTP ${error.statusCode}); use a token with write access`);
      }
      throw this.fail({ type: "model", id: "whoami" }, `checking HF_TOKEN with ${this.env.endpoint}`, error, 1);
    }
  }

  /** The commit a branch points at, or undefined when the repo or the branch does not exist. */
  async branchHead(repo: RepoRef, branch: string): Promise<string | undefined> {
    try {
      return await this.client.resolveRevision(repo, branch);
    } catch (error) {
      if (error instanceof RuntimeFailure && /HTTP 404/.test(error.message)) return undefined;
      throw error;
    }
  }

  async listFiles(repo: RepoRef, commit: string): Promise<RemoteFile[]> {
    return this.client.listFiles(repo, commit);
  }

  async createRepo(repo: RepoRef, isPrivate: boolean): Promise<void> {
    await this.retrying(repo, "creating the repo", () =>
      createRepo({ repo: { type: repo.type, name: repo.id }, private: isPrivate, ...this.credentials() }).then(() => undefined),
    );
  }

  /** A new branch: empty, or from another revision. */
  async createBranch(repo: RepoRef, branch: string, from: { empty: true } | { revision: string }): Promise<void> {
    await this.retrying(repo, `creating branch ${branch}`, () =>
      createBranch({ repo: { type: repo.type, name: repo.id }, branch, ...("empty" in from ? { empty: true } : { revision: from.revision }), ...this.credentials() }),
    );
  }

  /** One commit of these files (and deletions) on a branch; resolves to the commit's sha and URL. */
  async commit(
    repo: RepoRef,
    branch: string,
    title: string,
    files: LocalUpload[],
    remove: string[],
    onProgress?: (p: UploadProgress) => void,
  ): Promise<{ oid: string; url: string }> {
    const total = files.reduce((a, f) => a + f.size, 0);
    return this.retrying(repo, `committing ${files.length} file(s) to ${branch}`, async () => {
      const operations: CommitOperation[] = remove.map((path) => ({ operation: "delete" as const, path }));
      for (const f of files) {
        const content = typeof f.source === "string" ? await openAsBlob(f.source) : new Blob([f.source]);
        operations.push({ operation: "addOrUpdate", path: f.path, content });
      }
      const done = new Map<string, number>();
      const iterator = commitIter({ repo: { type: repo.type, name: repo.id }, branch, title, operations, useWebWorkers: false, ...this.credentials() });
      for (;;) {
        const next = await iterator.next();
        if (next.done) {
          if (!next.value) throw new RuntimeFailure(`${describe(repo)}: the Hub returned no commit for ${title}`);
          return next.value.commit;
        }
        const e = next.value;
        if (e.event === "fileProgress" && e.state === "uploading") {
          const size = files.find((f) => f.path === e.path)?.size ?? 0;
          done.set(e.path, Math.round(e.progress * size));
          onProgress?.({ sent: [...done.values()].reduce((a, b) => a + b, 0), total, path: e.path });
        }
      }
    });
  }

  private async retrying<T>(repo: RepoRef, what: string, attempt: () => Promise<T>): Promise<T> {
    const retries = this.options.retries ?? 3;
    for (let i = 1; ; i++) {
      try {
        return await attempt();
      } catch (error) {
        const status = error instanceof HubApiError ? error.statusCode : undefined;
        const transient = status === undefined ? !(error instanceof UsageError || error instanceof RuntimeFailure) : status >= 500 || status === 429;
        if (!transient || i > retries) throw this.fail(repo, what, error, i);
        this.options.onRetry?.(what, i, redactSecrets(String((error as Error).message ?? error)).split(". URL:")[0]!);
        await new Promise((r) => setTimeout(r, (this.options.backoffMs ?? 250) * 2 ** (i - 1)));
      }
    }
  }

  private fail(repo: RepoRef, what: string, error: unknown, attempts: number): Error {
    if (error instanceof UsageError || error instanceof RuntimeFailure) return error;
    const tries = attempts > 1 ? ` (${attempts} attempts)` : "";
    if ((error as Error)?.name === "TimeoutError") {
      return new RuntimeFailure(
        `${describe(repo)}: ${what}: the connection stalled (no answer within HF_HUB_DOWNLOAD_TIMEOUT plus 1 s per MB sent)${tries}; check the network, then rerun to resume`,
      );
    }
    if (error instanceof HubApiError) {
      const s = error.statusCode;
      const text = redactSecrets(error.message.split(". URL:")[0] ?? "");
      if (s === 401 || s === 403) return new RuntimeFailure(`${describe(repo)}: ${what} was refused (HTTP ${s}): HF_TOKEN lacks write access to it`);
      if (s === 409) return new RuntimeFailure(`${describe(repo)}: ${what}: it exists already (HTTP 409: ${text})`);
      if (s >= 500) return new RuntimeFailure(`${describe(repo)}: ${what}: the Hub failed with HTTP ${s}${tries}; rerun the same command to resume`);
      return new RuntimeFailure(`${describe(repo)}: ${what} was rejected with HTTP ${s}: ${text}`);
    }
    const cause = (error as { cause?: { code?: string; message?: string } })?.cause;
    if (error instanceof TypeError && cause) {
      return new RuntimeFailure(`${what}: cannot reach ${this.env.endpoint} (${cause.code ?? cause.message})${tries}; check the network or HF_ENDPOINT, then rerun to resume`);
    }
    return new RuntimeFailure(`${describe(repo)}: ${what} failed${tries}: ${redactSecrets(String((error as Error)?.message ?? error))}; rerun the same command to resume`);
  }
}
