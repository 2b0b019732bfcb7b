/**
 * A loopback server that speaks the parts of the Hugging Face Hub HTTP API the real `@huggingface/hub`
 * client uses (revision info, tree listing, paths-info, resolve with ranges), over folders laid out as
 * `datasets/<org>/<name>` and `models/<org>/<name>`. It can play faults on demand for tests.
 */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync, existsSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join, relative, sep } from "node:path";

/**
 * 500 / 429 / 400: that status; drop: half the body, then the socket closes; corrupt: one byte flipped;
 * gone: 404 EntryNotFound; stall: the request is held without headers; stall_body: half the body, then nothing.
 */
export type FaultKind = "500" | "429" | "400" | "drop" | "corrupt" | "gone" | "stall" | "stall_body";

export interface Fault {
  /** Substring of the request path (after the host) the fault applies to. */
  match: string;
  kind: FaultKind;
  /** How many matching requests fail before the fault clears (default: forever). */
  times?: number;
  /** Only full-content GETs (not the 1-byte range probe) when true; default true for all but 500, 429, 400 and stall. */
  contentOnly?: boolean;
}

interface RepoFile {
  path: string;
  absPath: string;
  size: number;
  sha256: string;
  gitOid: string;
  lfs: boolean;
}

interface Repo {
  type: "dataset" | "model";
  id: string;
  sha: string;
  files: RepoFile[];
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

function loadRepo(root: string, type: "dataset" | "model", id: string): Repo | undefined {
  const dir = join(root, `${type}s`, ...id.split("/"));
  if (!existsSync(dir) || !statSync(dir).isDirectory()) return undefined;
  const files = walk(dir)
    .map((absPath) => {
      const content = readFileSync(absPath);
      const path = relative(dir, absPath).split(sep).join("/");
      return {
        path,
        absPath,
        size: content.length,
        sha256: createHash("sha256").update(content).digest("hex"),
        gitOid: createHash("sha1").update(`blob ${content.length}\0`).update(content).digest("hex"),
        // As on the Hub: data and tokenizer files live in LFS, cards in git.
        lfs: !/\.(md|gitattributes)$/.test(path),
      };
    })
    .sort((a, b) => (a.path < b.path ? -1 : 1));
  const sha = createHash("sha1")
    .update(id + "\n" + files.map((f) => `${f.path} ${f.sha256}`).join("\n"))
    .digest("hex");
  return { type, id, sha, files };
}

export interface HubServerOptions {
  root: string;
  /** Repo ids (`datasets/org/name` or `models/org/name`) that require `Authorization: Bearer <token>`. */
  privateRepos?: Record<string, string>;
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

  private takeFault(path: string, isContent: boolean): Fault | undefined {
    const fault = this.faults.find(
      (f) =>
        path.includes(f.match) &&
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
    const fault = this.takeFault(path, isContent && path.includes("/resolve/"));
    if (fault?.kind === "500" || fault?.kind === "429" || fault?.kind === "400") {
      return void json(res, Number(fault.kind), { error: `injected HTTP ${fault.kind}` });
    }
    if (fault?.kind === "stall") return; // never answers; stop() closes the socket
    if (fault?.kind === "gone") return void json(res, 404, { error: "Entry not found" }, { "X-Error-Code": "EntryNotFound" });

    let m: RegExpMatchArray | null;
    if ((m = path.match(/^\/api\/(datasets|models)\/([^/]+\/[^/]+|[^/]+)\/revision\/([^/]+)$/))) {
      const repo = this.authorized(req, res, m[1] === "datasets" ? "dataset" : "model", m[2]!);
      if (!repo) return;
      if (!this.revisionOk(repo, m[3]!)) return void json(res, 404, { error: "Invalid rev id" }, { "X-Error-Code": "RevisionNotFound" });
      return void json(res, 200, {
        _id: repo.sha.slice(0, 24),
        id: repo.id,
        sha: repo.sha,
        private: !!this.options.privateRepos?.[`${repo.type}s/${repo.id}`],
        lastModified: "2026-01-01T00:00:00.000Z",
        downloads: 0,
        likes: 0,
        gated: false,
        siblings: repo.files.map((f) => ({ rfilename: f.path })),
      });
    }
    if ((m = path.match(/^\/api\/(datasets|models)\/([^/]+\/[^/]+)\/tree\/([^/]+)(?:\/(.*))?$/))) {
      const repo = this.authorized(req, res, m[1] === "datasets" ? "dataset" : "model", m[2]!);
      if (!repo) return;
      if (!this.revisionOk(repo, m[3]!)) return void json(res, 404, { error: "Invalid rev id" }, { "X-Error-Code": "RevisionNotFound" });
      const prefix = m[4] ? m[4].replace(/\/$/, "") + "/" : "";
      const extra = (this.extraListing.get(`${repo.type}s/${repo.id}`) ?? []).map((e) => ({ type: "file", oid: "0".repeat(40), ...e }));
      const listed = repo.files.filter((f) => f.path.startsWith(prefix)).map((f) => ({ ...entry(f, repo), ...this.listingOverrides.get(f.path) }));
      return void json(res, 200, [...listed, ...extra]);
    }
    if ((m = path.match(/^\/api\/(datasets|models)\/([^/]+\/[^/]+)\/paths-info\/([^/]+)$/)) && req.method === "POST") {
      const repo = this.authorized(req, res, m[1] === "datasets" ? "dataset" : "model", m[2]!);
      if (!repo) return;
      const body = JSON.parse(await readBody(req)) as { paths: string[] };
      return void json(res, 200, repo.files.filter((f) => body.paths.includes(f.path)).map((f) => entry(f, repo)));
    }
    if ((m = path.match(/^\/(?:(datasets)\/)?([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/))) {
      const repo = this.authorized(req, res, m[1] ? "dataset" : "model", m[2]!);
      if (!repo) return;
      if (!this.revisionOk(repo, m[3]!)) return void json(res, 404, { error: "Invalid rev id" }, { "X-Error-Code": "RevisionNotFound" });
      const file = repo.files.find((f) => f.path === m![4]);
      if (!file) return void json(res, 404, { error: "Entry not found" }, { "X-Error-Code": "EntryNotFound" });
      let body: Buffer = readFileSync(file.absPath);
      const headers: Record<string, string> = {
        "Content-Type": "application/octet-stream",
        ETag: `"${file.lfs ? file.sha256 : file.gitOid}"`,
        "X-Repo-Commit": repo.sha,
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

  private revisionOk(repo: Repo, revision: string): boolean {
    return revision === "main" || revision === "HEAD" || revision === repo.sha;
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

function entry(f: RepoFile, repo: Repo) {
  return {
    type: "file",
    oid: f.gitOid,
    size: f.size,
    path: f.path,
    ...(f.lfs ? { lfs: { oid: f.sha256, size: f.size, pointerSize: 134 } } : {}),
    lastCommit: { id: repo.sha, title: "fixture", date: "2026-01-01T00:00:00.000Z" },
  };
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text), ...headers });
  res.end(text);
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}
