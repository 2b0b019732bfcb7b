import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, readFile, readlink, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { HubClient, type RepoRef } from "../../src/hub/client.ts";
import { hubEnv } from "../../src/hub/env.ts";
import { globToRegExp } from "../../src/hub/paths.ts";
import { RuntimeFailure, UsageError } from "../../src/util/errors.ts";
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

  it("refuses a listing whose oid or lfs.oid is not a hex digest before any path is built", async () => {
    const home2 = await mkdtemp(join(tmpdir(), "chuxin-hf-hostile-"));
    const c = new HubClient(hubEnv({ HF_ENDPOINT: server.url, HF_HOME: join(home2, "hf") }), { backoffMs: 5, retries: 1 });
    const sha = await c.resolveRevision(prose, "main");
    try {
      for (const override of [{ lfs: { oid: "../../../escaped", size: 10, pointerSize: 134 } }, { oid: "../../x" }]) {
        server.listingOverrides.set("data/train-00000-of-00002.parquet", override);
        await assert.rejects(c.listFiles(prose, sha), (e: Error) => {
          assert.ok(e instanceof RuntimeFailure, "a hostile server is a runtime failure (exit 1), not the user's mistake");
          assert.match(e.message, /is not a hex digest; refusing to use it/);
          return true;
        });
      }
      // The same entry given straight to download (as a lock could) is refused too, and nothing lands outside the cache.
      const hostileFile = { path: "data/train-00000-of-00002.parquet", size: 10, gitOid: undefined, lfsSha256: "../../../escaped" };
      await assert.rejects(c.download(prose, sha, hostileFile), /not a hex digest/);
      await assert.rejects(c.download(prose, "../../../escaped-commit".padEnd(40, "x"), hostileFile), /not a 40-hex commit sha/);
      assert.deepEqual((await readdir(home2)).sort(), ["hf"]);
    } finally {
      server.listingOverrides.clear();
      await rm(home2, { recursive: true, force: true });
    }
  });

  it("retries a 5xx or 429 on the file body (not only on the probe), and never a 400", async () => {
    for (const kind of ["500", "429"] as const) {
      const c = client({ HF_HOME: join(home, `body-${kind}`) });
      const sha = await c.resolveRevision(prose, "main");
      const file = (await c.listFiles(prose, sha)).find((f) => f.path.endsWith("00001-of-00002.parquet"))!;
      server.faults.push({ match: "00001-of-00002", kind, times: 2, contentOnly: true });
      const got = await c.download(prose, sha, file);
      assert.equal(got.sha256, file.lfsSha256, kind);
      assert.equal(server.faults[0]?.times, 0, `both ${kind}s were served and retried`);
      server.faults.length = 0;
    }
    const c = client({ HF_HOME: join(home, "body-400") });
    const sha = await c.resolveRevision(prose, "main");
    const file = (await c.listFiles(prose, sha)).find((f) => f.path.endsWith("00001-of-00002.parquet"))!;
    server.faults.push({ match: "00001-of-00002", kind: "400", times: 3, contentOnly: true });
    try {
      await assert.rejects(c.download(prose, sha, file), (e: Error) => {
        assert.match(e.message, /rejected with HTTP 400/);
        assert.doesNotMatch(e.message, /retr|attempts/);
        return true;
      });
      assert.equal(server.faults[0]?.times, 2, "a 400 is not retried");
    } finally {
      server.faults.length = 0;
    }
  });

  it("refuses a token without the hf_ prefix at once, without retrying it", async () => {
    const before = server.requests.length;
    await assert.rejects(client({ HF_TOKEN: "not-a-token" }).resolveRevision(prose, "main"), (e: Error) => {
      assert.ok(e instanceof UsageError);
      assert.match(e.message, /HF_TOKEN does not look like a Hugging Face access token/);
      assert.doesNotMatch(e.message, /not-a-token/);
      return true;
    });
    assert.equal(server.requests.length, before, "nothing was sent");
  });

  it("times out a stalled connection (before headers and mid-body), retries it, and names the stall when it persists", async () => {
    const fast = (extra: Record<string, string> = {}) => client({ HF_HUB_DOWNLOAD_TIMEOUT: "0.5", ...extra });
    for (const kind of ["stall", "stall_body"] as const) {
      const c = fast({ HF_HOME: join(home, kind) });
      const sha = await c.resolveRevision(prose, "main");
      const file = (await c.listFiles(prose, sha)).find((f) => f.path.endsWith("00001-of-00002.parquet"))!;
      server.faults.push({ match: "00001-of-00002", kind, times: 1, contentOnly: true });
      const started = Date.now();
      assert.equal((await c.download(prose, sha, file)).sha256, file.lfsSha256, kind);
      assert.ok(Date.now() - started < 10_000, `${kind} recovered within the timeout`);
      server.faults.length = 0;
    }
    const c = fast({ HF_HOME: join(home, "stall-forever") });
    const sha = await c.resolveRevision(prose, "main");
    const file = (await c.listFiles(prose, sha)).find((f) => f.path.endsWith("00001-of-00002.parquet"))!;
    server.faults.push({ match: "00001-of-00002", kind: "stall_body", contentOnly: true });
    try {
      await assert.rejects(c.download(prose, sha, file), /no data for 0\.5 s after \d+ bytes \(HF_HUB_DOWNLOAD_TIMEOUT\) \(4 attempts\); the connection stalled/);
    } finally {
      server.faults.length = 0;
    }
  });

  it("says a download was cut short rather than that the Hub cannot be reached", async () => {
    const c = client({ HF_HOME: join(home, "dropped") });
    const sha = await c.resolveRevision(prose, "main");
    const file = (await c.listFiles(prose, sha)).find((f) => f.path.endsWith("00001-of-00002.parquet"))!;
    server.faults.push({ match: "00001-of-00002", kind: "drop" });
    try {
      await assert.rejects(c.download(prose, sha, file), (e: Error) => {
        assert.doesNotMatch(e.message, /cannot reach/);
        assert.match(e.message, /closed after \d+ of \d+ bytes|dropped mid-transfer/);
        return true;
      });
    } finally {
      server.faults.length = 0;
    }
    const refused = new HubClient(hubEnv({ HF_ENDPOINT: "http://127.0.0.1:9", HF_HOME: join(home, "refused") }), { backoffMs: 1, retries: 1 });
    await assert.rejects(refused.resolveRevision(prose, "main"), /cannot reach http:\/\/127\.0\.0\.1:9/);
  });

  it("removes partial downloads a killed run left in the cache once the blob is complete", async () => {
    const hf = join(home, "leftovers");
    const c = client({ HF_HOME: hf, HF_HUB_DOWNLOAD_TIMEOUT: "1" });
    const sha = await c.resolveRevision(prose, "main");
    const file = (await c.listFiles(prose, sha)).find((f) => f.path.endsWith("00000-of-00002.parquet"))!;
    const blobs = join(hf, "hub", "datasets--fixture--en-prose", "blobs");
    await mkdir(blobs, { recursive: true });
    const stale = join(blobs, `${file.lfsSha256}.0badc0de.tmp`);
    const live = join(blobs, `${file.lfsSha256}.1badc0de.tmp`);
    await writeFile(stale, "partial");
    await writeFile(live, "partial, still being written");
    const old = new Date(Date.now() - 60_000);
    await utimes(stale, old, old);
    await c.download(prose, sha, file);
    const left = await readdir(blobs);
    assert.ok(!left.includes(basename(stale)), "the stale partial file is gone");
    assert.ok(left.includes(basename(live)), "a partial file touched within the timeout may belong to a live download");
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
