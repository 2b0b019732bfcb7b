/** The native tokenizer's spec cached on disk: read back exactly, never used when damaged, and the same ids either way. */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { parseTokenizerJson } from "../../src/tokenizer/json.ts";
import { nativeTokenizerSpec } from "../../src/tokenizer/spec.ts";
import { decodeSpec, encodeSpec, specCachePath } from "../../src/tokenizer/spec-cache.ts";
import { runCli } from "../helpers/cli.ts";
import { sharedTokenizer } from "../helpers/paths.ts";

describe("the native tokenizer's spec cache", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "chuxin-spec-cache-"));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  it("decodes to the spec it encoded; a changed byte is refused", async () => {
    const { json, info } = parseTokenizerJson(await readFile(sharedTokenizer, "utf8"), sharedTokenizer);
    const spec = nativeTokenizerSpec(json);
    const bytes = encodeSpec(info, spec);
    const back = decodeSpec(bytes)!;
    assert.deepEqual(back.info, info);
    assert.deepEqual(back.spec, spec);
    const bad = Buffer.from(bytes);
    bad[bad.length - 5]! ^= 1;
    assert.equal(decodeSpec(bad), undefined);
  });

  it("tokenize gives the same ids building the spec, reading it from the cache, and after the cache is damaged", async () => {
    const input = join(dir, "in.txt");
    await writeFile(input, "Hello, world! 初心 123\n");
    const env = { XDG_CACHE_HOME: join(dir, "cache") };
    const run = () => runCli(["tokenize", input, "--tokenizer", sharedTokenizer], { env });
    const first = await run();
    assert.equal(first.code, 0, first.stderr);
    const sha = parseTokenizerJson(await readFile(sharedTokenizer, "utf8"), sharedTokenizer).info.sha256;
    const cached = specCachePath(sha, env);
    assert.ok(existsSync(cached), "the spec is cached");
    const second = await run();
    assert.equal(second.stdout, first.stdout);
    const bytes = await readFile(cached);
    bytes[bytes.length - 1]! ^= 0xff;
    await writeFile(cached, bytes);
    const third = await run();
    assert.equal(third.code, 0, third.stderr);
    assert.equal(third.stdout, first.stdout);
  });
});
