/** resolveInputs: every input file found and pinned (Hub commit, size, sha256), and a lock that must be met. */
import assert from "node:assert/strict";
import { cp, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { HubClient } from "../../src/hub/client.ts";
import { hubEnv } from "../../src/hub/env.ts";
import { resolveInputs } from "../../src/pipeline/resolve.ts";
import { parseRecipe } from "../../src/recipe/load.ts";
import { sha256File } from "../../src/util/hash.ts";
import { HubServer } from "../helpers/hub-server.ts";
import { sharedHub, sharedTokenizer } from "../helpers/paths.ts";

const RECIPE = [
  "name: t",
  "tokenizer: {path: tokenizer.json}",
  "sources:",
  "  - {name: math, weight: 1, hf: {repo: openai/gsm8k, revision: main, files: ['main/train-*.parquet']}, text_template: '{question}'}",
  "  - {name: notes, weight: 1, local: {files: ['notes/*.jsonl']}}",
].join("\n");

describe("resolveInputs", () => {
  let dir: string;
  let server: HubServer;
  let client: HubClient;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "chuxin-resolve-"));
    server = await new HubServer({ root: sharedHub }).start();
    client = new HubClient(hubEnv({ HF_ENDPOINT: server.url, HF_HOME: join(dir, "hf") }));
    await cp(sharedTokenizer, join(dir, "tokenizer.json"));
    await mkdir(join(dir, "notes"));
    await writeFile(join(dir, "notes", "b.jsonl"), '{"text":"b"}\n');
    await writeFile(join(dir, "notes", "a.jsonl"), '{"text":"a"}\n');
  });
  after(async () => {
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("pins a Hub revision to its commit, lists matching files in order with their sha256, and records it all in the lock", async () => {
    const recipe = parseRecipe(RECIPE, join(dir, "t.yaml"));
    const r = await resolveInputs(client, recipe, join(dir, "t.yaml"), undefined, () => {});
    const [math, notes] = r.sources;
    assert.match(math!.hf!.commit, /^[0-9a-f]{40}$/);
    assert.equal(math!.hf!.revision, "main");
    assert.ok(math!.files.length >= 1 && math!.files.every((f) => /^main\/train-.*\.parquet$/.test(f.path)));
    for (const f of math!.files) assert.equal(await sha256File(f.localPath), f.sha256);
    assert.deepEqual(notes!.files.map((f) => f.path), ["notes/a.jsonl", "notes/b.jsonl"]);
    assert.equal(r.tokenizer.sha256, await sha256File(sharedTokenizer));
    assert.deepEqual(r.lock.sources.map((s) => s.name), ["math", "notes"]);
    assert.equal((r.lock.sources[0] as { hf: { commit: string } }).hf.commit, math!.hf!.commit);

    // Resolved again under its own lock: the same files; a local file that changed since is refused.
    const again = await resolveInputs(client, recipe, join(dir, "t.yaml"), r.lock, () => {});
    assert.deepEqual(again.lock, r.lock);
    await writeFile(join(dir, "notes", "a.jsonl"), '{"text":"changed"}\n');
    await assert.rejects(resolveInputs(client, recipe, join(dir, "t.yaml"), r.lock, () => {}), /source 'notes': notes\/a\.jsonl differs from the lock/);
  });

  it("refuses a source the lock does not list", async () => {
    const recipe = parseRecipe(RECIPE, join(dir, "t.yaml"));
    const first = await resolveInputs(client, recipe, join(dir, "t.yaml"), undefined, () => {});
    const lock = { ...first.lock, sources: first.lock.sources.filter((s) => s.name !== "notes") };
    await assert.rejects(resolveInputs(client, recipe, join(dir, "t.yaml"), lock, () => {}), /source 'notes' is not in the lock/);
  });
});
