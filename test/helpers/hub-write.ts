/**
 * The write half of the loopback Hub, as `@huggingface/hub` calls it: whoami, repo creation, preupload, the LFS
 * batch API with basic transfers, the NDJSON commit, and branches. Writes need `Authorization: Bearer <token>`
 * with one of the server's tokens. Uploaded LFS bytes are checked against their sha256 before they are kept.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { addCommit, fileOf, resolveRevision, sha256, type Repo, type RepoFile } from "./hub-repos.ts";

export interface WriteContext {
  baseUrl: string;
  tokens: string[];
  repo(type: "dataset" | "model", id: string): Repo | undefined;
  createRepo(repo: Repo): void;
  /** LFS objects uploaded so far, by repo and sha256 ("datasets/org/name:<sha256>"): as on the Hub, an object is
   * stored per repo, so another repo uploads it again */
  blobs: Map<string, Buffer>;
  json(res: ServerResponse, status: number, body: unknown, headers?: Record<string, string>): void;
  readBody(req: IncomingMessage): Promise<Buffer>;
}

/** Text files small enough stay in git; everything else goes through LFS (the Hub's rule, roughly). */
function isLfs(path: string, size: number): boolean {
  return !(/\.(md|json|yaml|yml|txt|svg|gitattributes)$/.test(path) && size < 10 * 1024 * 1024);
}

function typeOf(segment: string | undefined): "dataset" | "model" {
  return segment === "datasets" || segment === "dataset" ? "dataset" : "model";
}

/** Handles the request when it is a write route; false when it is not one. */
export async function handleWrite(ctx: WriteContext, req: IncomingMessage, res: ServerResponse, path: string): Promise<boolean> {
  const method = req.method ?? "GET";
  const authorized = (): boolean => {
    const token = req.headers.authorization?.replace(/^Bearer /, "");
    if (token && ctx.tokens.includes(token)) return true;
    ctx.json(res, 401, { error: "Invalid credentials in Authorization header" });
    return false;
  };
  const reply = (status: number, body: unknown, headers?: Record<string, string>): true => {
    ctx.json(res, status, body, headers);
    return true;
  };
  const notFound = () => reply(404, { error: "Repository not found" }, { "X-Error-Code": "RepoNotFound" });
  let m: RegExpMatchArray | null;
  if (path === "/api/whoami-v2" && method === "GET") {
    if (!authorized()) return true;
    ctx.json(res, 200, { type: "user", name: "loopback", auth: { type: "access_token", accessToken: { displayName: "test", role: "write" } } });
    return true;
  }
  if (path === "/api/repos/create" && method === "POST") {
    if (!authorized()) return true;
    const body = JSON.parse((await ctx.readBody(req)).toString("utf8")) as { name: string; organization?: string; type?: string; visibility?: string };
    const type = typeOf(body.type);
    const id = body.organization ? `${body.organization}/${body.name}` : body.name;
    if (ctx.repo(type, id)) {
      ctx.json(res, 409, { error: `You already created this ${type} repo`, url: `${ctx.baseUrl}/${type === "dataset" ? "datasets/" : ""}${id}` });
      return true;
    }
    const repo: Repo = { type, id, private: body.visibility === "private", branches: new Map(), commits: new Map() };
    const attributes = Buffer.from("*.npy filter=lfs diff=lfs merge=lfs -text\n*.parquet filter=lfs diff=lfs merge=lfs -text\n*.safetensors filter=lfs diff=lfs merge=lfs -text\n");
    addCommit(repo, "main", "initial commit", { put: [fileOf(".gitattributes", attributes, attributes.length, false)], remove: [] });
    ctx.createRepo(repo);
    ctx.json(res, 200, { url: `${ctx.baseUrl}/${type === "dataset" ? "datasets/" : ""}${id}`, id });
    return true;
  }
  if ((m = path.match(/^\/api\/(datasets|models)\/([^/]+\/[^/]+)\/preupload\/([^/]+)$/)) && method === "POST") {
    if (!authorized()) return true;
    if (!ctx.repo(typeOf(m[1]), m[2]!)) return notFound();
    const body = JSON.parse((await ctx.readBody(req)).toString("utf8")) as { files: { path: string; size: number }[] };
    ctx.json(res, 200, { files: body.files.map((f) => ({ path: f.path, uploadMode: isLfs(f.path, f.size) ? "lfs" : "regular", shouldIgnore: false })) });
    return true;
  }
  if ((m = path.match(/^\/(?:(datasets)\/)?([^/]+\/[^/]+)\.git\/info\/lfs\/objects\/batch$/)) && method === "POST") {
    if (!authorized()) return true;
    const key = `${m[1] ? "datasets" : "models"}/${m[2]}`;
    const body = JSON.parse((await ctx.readBody(req)).toString("utf8")) as { objects: { oid: string; size: number }[] };
    ctx.json(res, 200, {
      transfer: "basic",
      objects: body.objects.map((o) => ({
        oid: o.oid,
        size: o.size,
        // An object the Hub holds already needs no upload (what makes a second publish upload nothing).
        ...(ctx.blobs.has(`${key}:${o.oid}`) ? {} : { actions: { upload: { href: `${ctx.baseUrl}/__lfs/${key}/${o.oid}` } } }),
      })),
    });
    return true;
  }
  if ((m = path.match(/^\/__lfs\/((?:datasets|models)\/[^/]+\/[^/]+)\/([0-9a-f]{64})$/)) && method === "PUT") {
    const body = await ctx.readBody(req);
    if (sha256(body) !== m[2]) return reply(400, { error: "the uploaded bytes do not match their sha256" });
    ctx.blobs.set(`${m[1]}:${m[2]}`, body);
    res.writeHead(200).end();
    return true;
  }
  if ((m = path.match(/^\/api\/(datasets|models)\/([^/]+\/[^/]+)\/commit\/([^/]+)$/)) && method === "POST") {
    if (!authorized()) return true;
    const repo = ctx.repo(typeOf(m[1]), m[2]!);
    if (!repo) return notFound();
    const branch = m[3]!;
    if (!repo.branches.has(branch)) return reply(404, { error: `Invalid rev id: ${branch}` }, { "X-Error-Code": "RevisionNotFound" });
    const lines = (await ctx.readBody(req)).toString("utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l) as { key: string; value: Record<string, unknown> });
    let title = "";
    const put: RepoFile[] = [];
    const remove: string[] = [];
    for (const { key, value } of lines) {
      if (key === "header") {
        title = String(value.summary ?? "");
        if (value.parentCommit && value.parentCommit !== repo.branches.get(branch)) {
          return reply(412, { error: `parent commit ${value.parentCommit} is not the head of ${branch}` });
        }
      } else if (key === "file") {
        const content = Buffer.from(String(value.content), "base64");
        put.push(fileOf(String(value.path), content, content.length, false));
      } else if (key === "lfsFile") {
        const blob = ctx.blobs.get(`${repo.type}s/${repo.id}:${value.oid}`);
        if (!blob) return reply(422, { error: `LFS object ${value.oid} for ${value.path} was never uploaded` });
        put.push(fileOf(String(value.path), blob, blob.length, true));
      } else if (key === "deletedFile" || key === "deletedFolder") {
        remove.push(String(value.path));
      }
    }
    const commit = addCommit(repo, branch, title, { put, remove });
    const web = `${ctx.baseUrl}/${repo.type === "dataset" ? "datasets/" : ""}${repo.id}`;
    ctx.json(res, 200, { commitOid: commit.sha, commitUrl: `${web}/commit/${commit.sha}`, success: true });
    return true;
  }
  if ((m = path.match(/^\/api\/(datasets|models)\/([^/]+\/[^/]+)\/branch\/([^/]+)$/)) && method === "POST") {
    if (!authorized()) return true;
    const repo = ctx.repo(typeOf(m[1]), m[2]!);
    if (!repo) return notFound();
    const body = JSON.parse((await ctx.readBody(req)).toString("utf8") || "{}") as { startingPoint?: string; emptyBranch?: boolean; overwrite?: boolean };
    const name = m[3]!;
    if (repo.branches.has(name) && !body.overwrite) return reply(409, { error: `Reference already exists: refs/heads/${name}` });
    if (body.emptyBranch) {
      repo.branches.delete(name);
      addCommit(repo, name, "empty branch", { put: [], remove: [] });
    } else {
      const from = resolveRevision(repo, body.startingPoint ?? "main");
      if (!from) return reply(404, { error: `Invalid rev id: ${body.startingPoint}` }, { "X-Error-Code": "RevisionNotFound" });
      repo.branches.set(name, from.sha);
    }
    ctx.json(res, 200, {});
    return true;
  }
  return false;
}
