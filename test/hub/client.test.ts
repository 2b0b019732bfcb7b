import assert from "node:assert/strict";
import { mkdtemp, readFile, readlink, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { HubClient, type RepoRef } from "../../src/hub/client.ts";
import { hubEnv } from "../../src/hub/env.ts";
import { globToRegExp } from "../../src/hub/paths.ts";
import { HubServer } from "../helpers/hub-server.ts";
import { sharedHub } from "../helpers/paths.ts";

const prose: RepoRef = { type: "dataset", id: "fixture/en-prose" };

describe("Hub client against the loopback Hub", () => {
  let server: HubServer;
  let home: string;
  const client = (extra: Record<string, string> = {}) =>
    new HubClient(hubEnv({ HF_ENDPOINT: server.url, HF_HOME: home, ...extra }), { backoffMs: 5, retries: 3 });

  before(async () => {
    server = await new HubServer({ root: sharedHub, privateRepos: { "datasets/fixture/math": "hf_secretToken123" } }).start();
    home = await mkdtemp(join(tmpdir(), "chuxin-hf-"));
  });
  after(async () => {
    await server.stop();
    await rm(home, { recursive: true, force: true });
  });

  it("resolves main to a commit and downloads into Python's cache layout, verifying sha256", async () => {
    const c = client();
    const sha = await c.resolveRevision(prose, "main");
    assert.match(sha, /^[0-9a-f]{40}$/);
    assert.equal((await readFile(join(home, "hub", "datasets--fixture--en-prose", "refs", "main"), "utf8")).trim(), sha);
    const files = await c.listFiles(prose, sha);
    const parquet = files.find((f) => f.path === "data/train-00000-of-00002.parquet")!;
    assert.equal(parquet.lfsSha256, "4ae85b3609ab2a534333384bfa555654ef37793776f076db4fe7827d85138b7b");
    const got = await c.download(prose, sha, parquet);
    assert.equal(got.localPath, join(home, "hub", "datasets--fixture--en-prose", "snapshots", sha, "data/train-00000-of-00002.parquet"));
    assert.equal(await readlink(got.localPath), `../../../blobs/${parquet.lfsSha256}`);
    assert.equal(got.sha256, parquet.lfsSha256);
  });

  it("retries 500s and a connection dropped mid-file, and re-fetches corrupt bytes", async () => {
    const c = client();
    const sha = await c.resolveRevision(prose, "main");
    const file = (await c.listFiles(prose, sha)).find((f) => f.path.endsWith("00001-of-00002.parquet"))!;
    server.faults.push({ match: "00001-of-00002", kind: "500", times: 1 }, { match: "00001-of-00002", kind: "drop", times: 1 }, { match: "00001-of-00002", kind: "corrupt", times: 1 });
    const before = server.requests.length;
    const got = await c.download(prose, sha, file);
    assert.equal(got.sha256, file.lfsSha256);
    assert.ok(server.requests.length - before >= 6, "each fault costs a retry");
  });

  it("fails clearly when the bytes never match the sha256, leaving nothing in the cache", async () => {
    const c = client({ HF_HOME: join(home, "other") });
    const sha = await c.resolveRevision(prose, "main");
    const file = (await c.listFiles(prose, sha)).find((f) => f.path.endsWith("00000-of-00002.parquet"))!;
    server.faults.push({ match: "00000-of-00002", kind: "corrupt" });
    try {
      await assert.rejects(c.download(prose, sha, file), /sha256 [0-9a-f]{64} does not match the expected 4ae85b36/);
    } finally {
      server.faults.length = 0;
    }
    await assert.rejects(readFile(join(home, "other", "hub", "datasets--fixture--en-prose", "snapshots", sha, file.path)));
  });

  it("says what to do about a missing repo and a private one, without leaking the token", async () => {
    await assert.rejects(client().resolveRevision({ type: "dataset", id: "fixture/nope" }, "main"), /fixture\/nope.*not found \(HTTP 404\).*check the repo id/);
    const math: RepoRef = { type: "dataset", id: "fixture/math" };
    await assert.rejects(client().resolveRevision(math, "main"), /private or gated: set HF_TOKEN/);
    await assert.rejects(client({ HF_TOKEN: "hf_wrongWrongWrong" }).resolveRevision(math, "main"), (e: Error) => {
      assert.match(e.message, /HF_TOKEN is set but lacks access/);
      assert.doesNotMatch(e.message, /hf_wrong/);
      return true;
    });
    assert.match(await client({ HF_TOKEN: "hf_secretToken123" }).resolveRevision(math, "main"), /^[0-9a-f]{40}$/);
    const authed = server.requests.filter((r) => r.url.includes("fixture/math") && r.authorization === "Bearer hf_secretToken123");
    assert.ok(authed.length > 0, "the token is sent as a bearer header");
  });

  it("refuses unsafe paths from a listing", async () => {
    server.extraListing.set("datasets/fixture/en-prose", [{ path: "../../escape.parquet", size: 3 }]);
    try {
      const c = client();
      const sha = await c.resolveRevision(prose, "main");
      await assert.rejects(c.listFiles(prose, sha), /refusing unsafe file path "\.\.\/\.\.\/escape\.parquet"/);
    } finally {
      server.extraListing.clear();
    }
  });

  it("works offline from the cache, and says so when the cache lacks a file", async () => {
    const online = client();
    const sha = await online.resolveRevision(prose, "main");
    const offline = client({ HF_HUB_OFFLINE: "1" });
    assert.equal(await offline.resolveRevision(prose, "main"), sha);
    const file = { path: "data/none.parquet", size: 1, gitOid: undefined, lfsSha256: undefined };
    await assert.rejects(offline.download(prose, sha, file), /not in the cache .* HF_HUB_OFFLINE is set/);
  });
});

describe("globs", () => {
  it("keep * within a segment and let ** cross segments", () => {
    assert.ok(globToRegExp("data/*.parquet").test("data/train-0.parquet"));
    assert.ok(!globToRegExp("data/*.parquet").test("data/sub/train-0.parquet"));
    assert.ok(globToRegExp("**/*.parquet").test("data/sub/x.parquet"));
    assert.ok(globToRegExp("**/*.parquet").test("x.parquet"));
    assert.ok(globToRegExp("data/*.{jsonl,jsonl.gz}").test("data/a.jsonl.gz"));
  });
});
