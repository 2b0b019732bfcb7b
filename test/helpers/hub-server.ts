/**
 * A loopback server that speaks the parts of the Hugging Face Hub HTTP API the real `@huggingface/hub`
 * client uses: reads (revision info, tree listing, paths-info, resolve with ranges) over folders laid out as
 * `datasets/<org>/<name>` and `models/<org>/<name>` and over what was pushed, and writes (hub-write.ts: repo
 * creation, preupload, LFS, commits, branches) for tokens it was given. It can play faults on demand for tests.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { loadRepo, resolveRevision, type Commit, type Repo, type RepoFile } from "./hub-repos.ts";
import { handleWrite } from "./hub-write.ts";

/**
 * 500 / 429 / 400: that status; drop: half the body, then the socket closes; corrupt: one byte flipped;
 * gone: 404 EntryNotFound; stall: the request is held without headers; stall_body: half the body, then nothing;
 * slow: answered normally after `delayMs`.
 */
export type FaultKind = "500" | "429" | "400" | "drop" | "corrupt" | "gone" | "stall" | "stall_body" | "slow";

export interface Fault {
  /** Substring of the request path (after the host) the fault applies to. */
  match: string;
  kind: FaultKind;
  /** How many matching requests fail before the fault clears (default: forever). */
  times?: number;
  /** Only full-content GETs (not the 1-byte range probe) when true; default true for all but 500, 429, 400 and stall. */
  contentOnly?: boolean;
  /** Only requests of this method (e.g. "PUT" for uploads). */
  method?: string;
  /** For "slow": how long the answer waits. */
  delayMs?: number;
}

export interface HubServerOptions {
  root: string;
  /** Repo ids (`datasets/org/name` or `models/org/name`) that require `Authorization: Bearer <token>`. */
  privateRepos?: Record<string, string>;
  /** Tokens the write API accepts (repo creation, uploads, commits, branches); none: every write is refused. */
  writeTokens?: string[];
}

export class HubServer {
  readonly faults: Fault[] = [];
  /** Extra entries a listing returns for a repo key (`datasets/org/name`), e.g. hostile paths. */
  readonly extraListing = new Map<string, ({ path: string; size: number } & Record<string, unknown>)[]>();
  /** Entries of a listing whose fields are replaced (by path), e.g. a hostile `lfs.oid`. */
  readonly listingOverrides = new Map<string, Record<string, unknown>>();
  readonly requests: { method: string; url: string; authorization: string | undefined }[] = [];
  private server: Server | undefined;
  private repos = new Map<string, Repo | undefined>();
  /** LFS objects pushed through the write API, by sha256. */
  readonly blobs = new Map<string, Buffer>();

  constructor(private readonly options: HubServerOptions) {}

  get url(): string {
    const address = this.server?.address() as AddressInfo | undefined;
    if (!address) throw new Error("server not started");
    return `http://127.0.0.1:${address.port}`;
  }

  async start(port = 0): Promise<this> {
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((error) => {
        if (!res.headersSent) res.writeHead(500, { "Content-Type": "text/plain" });
        res.end(String(error));
      });
    });
    await new Promise<void>((resolve, reject) => {
      this.server!.once("error", reject);
      this.server!.listen(port, "127.0.0.1", () => {
        this.server!.off("error", reject);
        resolve();
      });
    });
    return this;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    this.server = undefined;
  }

  repo(type: "dataset" | "model", id: string): Repo | undefined {
    const key = `${type}s/${id}`;
    if (!this.repos.has(key)) this.repos.set(key, loadRepo(this.options.root, type, id));
    return this.repos.get(key);
  }

  private takeFault(path: string, isContent: boolean, method: string): Fault | undefined {
    const fault = this.faults.find(
      (f) =>
        path.includes(f.match) &&
        (f.method === undefined || f.method === method) &&
        (f.times === undefined || f.times > 0) &&
        (isContent || !(f.contentOnly ?? !["500", "429", "400", "stall"].includes(f.kind))),
    );
    if (fault && fault.times !== undefined) fault.times--;
    return fault;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://x");
    const path = decodeURIComponent(url.pathname);
    this.requests.push({ method: req.method ?? "GET", url: path, authorization: req.headers.authorization });
    const range = req.headers.range;
    const isContent = !(range === "bytes=0-0");
    const fault = this.takeFault(path, isContent && path.includes("/resolve/"), req.method ?? "GET");
    if (fault?.kind === "500" || fault?.kind === "429" || fault?.kind === "400") {
      return void json(res, Number(fault.kind), { error: `injected HTTP ${fault.kind}` });
    }
    if (fault?.kind === "stall") return; // never answers; stop() closes the socket
    if (fault?.kind === "slow") await new Promise((r) => setTimeout(r, fault.delayMs ?? 1000));
    if (fault?.kind === "gone") return void json(res, 404, { error: "Entry not found" }, { "X-Error-Code": "EntryNotFound" });

    const write = {
      baseUrl: this.url,
      tokens: this.options.writeTokens ?? [],
      repo: (type: "dataset" | "model", id: string) => this.repo(type, id),
      createRepo: (repo: Repo) => void this.repos.set(`${repo.type}s/${repo.id}`, repo),
      blobs: this.blobs,
      json,
      readBody,
    };
    if (await handleWrite(write, req, res, path)) return;
    let m: RegExpMatchArray | null;
    // The revision is one URL-encoded segment (a branch may hold slashes: refs/convert/parquet), so match before decoding.
    if ((m = url.pathname.match(/^\/api\/(datasets|models)\/([^/]+\/[^/]+|[^/]+)\/revision\/([^/]+)$/))) {
      const repo = this.authorized(req, res, m[1] === "datasets" ? "dataset" : "model", decodeURIComponent(m[2]!));
      if (!repo) return;
      const commit = resolveRevision(repo, decodeURIComponent(m[3]!));
      if (!commit) return void json(res, 404, { error: "Invalid rev id" }, { "X-Error-Code": "RevisionNotFound" });
      return void json(res, 200, {
        _id: commit.sha.slice(0, 24),
        id: repo.id,
        sha: commit.sha,
        private: repo.private || !!this.options.privateRepos?.[`${repo.type}s/${repo.id}`],
        lastModified: "2026-01-01T00:00:00.000Z",
        downloads: 0,
        likes: 0,
        gated: false,
        siblings: commit.files.map((f) => ({ rfilename: f.path })),
      });
    }
    if ((m = path.match(/^\/api\/(datasets|models)\/([^/]+\/[^/]+)\/tree\/([^/]+)(?:\/(.*))?$/))) {
      const repo = this.authorized(req, res, m[1] === "datasets" ? "dataset" : "model", m[2]!);
      if (!repo) return;
      const commit = resolveRevision(repo, m[3]!);
      if (!commit) return void json(res, 404, { error: "Invalid rev id" }, { "X-Error-Code": "RevisionNotFound" });
      const prefix = m[4] ? m[4].replace(/\/$/, "") + "/" : "";
      const extra = (this.extraListing.get(`${repo.type}s/${repo.id}`) ?? []).map((e) => ({ type: "file", oid: "0".repeat(40), ...e }));
      const listed = commit.files.filter((f) => f.path.startsWith(prefix)).map((f) => ({ ...entry(f, commit), ...this.listingOverrides.get(f.path) }));
      return void json(res, 200, [...listed, ...extra]);
    }
    if ((m = path.match(/^\/api\/(datasets|models)\/([^/]+\/[^/]+)\/paths-info\/([^/]+)$/)) && req.method === "POST") {
      const repo = this.authorized(req, res, m[1] === "datasets" ? "dataset" : "model", m[2]!);
      if (!repo) return;
      const commit = resolveRevision(repo, m[3]!);
      if (!commit) return void json(res, 404, { error: "Invalid rev id" }, { "X-Error-Code": "RevisionNotFound" });
      const body = JSON.parse((await readBody(req)).toString("utf8")) as { paths: string[] };
      return void json(res, 200, commit.files.filter((f) => body.paths.includes(f.path)).map((f) => entry(f, commit)));
    }
    if ((m = path.match(/^\/(?:(datasets)\/)?([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/))) {
      const repo = this.authorized(req, res, m[1] ? "dataset" : "model", m[2]!);
      if (!repo) return;
      const commit = resolveRevision(repo, m[3]!);
      if (!commit) return void json(res, 404, { error: "Invalid rev id" }, { "X-Error-Code": "RevisionNotFound" });
      const file = commit.files.find((f) => f.path === m![4]);
      if (!file) return void json(res, 404, { error: "Entry not found" }, { "X-Error-Code": "EntryNotFound" });
      let body: Buffer = file.content();
      const headers: Record<string, string> = {
        "Content-Type": "application/octet-stream",
        ETag: `"${file.lfs ? file.sha256 : file.gitOid}"`,
        "X-Repo-Commit": commit.sha,
        "Accept-Ranges": "bytes",
      };
      if (file.lfs) headers["X-Linked-ETag"] = `"${file.sha256}"`;
      let status = 200;
      const r = range?.match(/^bytes=(\d+)-(\d*)$/);
      if (r) {
        const start = Number(r[1]);
        const end = r[2] ? Math.min(Number(r[2]), file.size - 1) : file.size - 1;
        body = body.subarray(start, end + 1);
        headers["Content-Range"] = `bytes ${start}-${end}/${file.size}`;
        status = 206;
      }
      if (fault?.kind === "corrupt") {
        body = Buffer.from(body);
        const mid = Math.floor(body.length / 2);
        body[mid] = (body[mid] ?? 0) ^ 0xff;
      }
      headers["Content-Length"] = String(body.length);
      res.writeHead(status, headers);
      if (fault?.kind === "stall_body") {
        res.write(body.subarray(0, Math.floor(body.length / 2)));
        return; // the rest never comes
      }
      if (fault?.kind === "drop") {
        res.write(body.subarray(0, Math.floor(body.length / 2)));
        await new Promise((r) => setTimeout(r, 20));
        res.socket?.destroy();
        return;
      }
      return void res.end(req.method === "HEAD" ? undefined : body);
    }
    json(res, 404, { error: `no route for ${req.method} ${path}` });
  }

  private authorized(req: IncomingMessage, res: ServerResponse, type: "dataset" | "model", id: string): Repo | undefined {
    const token = this.options.privateRepos?.[`${type}s/${id}`];
    const repo = this.repo(type, id);
    if (token !== undefined && req.headers.authorization !== `Bearer ${token}`) {
      json(res, 401, { error: "Invalid username or password." }, { "X-Error-Code": "RepoNotFound" });
      return undefined;
    }
    if (!repo) {
      json(res, 404, { error: "Repository not found" }, { "X-Error-Code": "RepoNotFound" });
      return undefined;
    }
    return repo;
  }
}

function entry(f: RepoFile, commit: Commit) {
  return {
    type: "file",
    oid: f.gitOid,
    size: f.size,
    path: f.path,
    ...(f.lfs ? { lfs: { oid: f.sha256, size: f.size, pointerSize: 134 } } : {}),
    lastCommit: { id: commit.sha, title: commit.title, date: "2026-01-01T00:00:00.000Z" },
  };
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text), ...headers });
  res.end(text);
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}
