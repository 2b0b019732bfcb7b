/** disk-estimate: what .work will hold, from the input files' sizes, before a row is read. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { checkTokenizeSpace, checkWorkSpace, estimateAfterDedup, estimateWork } from "../../src/pipeline/disk-estimate.ts";
import type { ResolvedSource } from "../../src/pipeline/resolve.ts";
import { parseRecipe } from "../../src/recipe/load.ts";

const recipe = (extra = "") =>
  parseRecipe(`name: t\nseed: 1\nmax_epochs: 2\n${extra}sources:\n  - {name: a, weight: 1, local: {files: [a.jsonl]}}\n  - {name: b, weight: 3, local: {files: [b.parquet]}}\n`, "t.yaml");

function sources(aBytes: number, bParquetBytes: number, bInSlice = true): ResolvedSource[] {
  const file = (path: string, size: number, inSlice: boolean) => ({ path, localPath: path, size, sha256: "", inSlice });
  return [
    { spec: recipe().sources[0]!, index: 0, files: [file("a.jsonl", aBytes, true)] },
    { spec: recipe().sources[1]!, index: 1, files: [file("b.parquet", bParquetBytes, bInSlice)] },
  ];
}

describe("disk estimate", () => {
  it("counts JSON lines as their text and parquet as three times its bytes; tokens at 4 bytes for 2 of text", () => {
    const e = estimateWork(recipe(), sources(1000, 1000), { withShards: false, reusableTokenBytes: 0 });
    assert.equal(e.files, 2);
    assert.equal(e.inputBytes, 2000);
    assert.equal(e.textBytes, 4000);
    assert.equal(e.corpusDbBytes, 4000);
    assert.equal(e.tokenBytes, 8000);
    assert.equal(e.shardBytes, 0);
    assert.equal(e.peakBytes, 12000);
  });

  it("sizes the shards as the mixture will: max_epochs over the scarcest source by weight, or target_tokens", () => {
    // a: 500 tokens, weight 1/4; b: 1500 tokens, weight 3/4. Both allow 2 epochs: 4000 tokens, 16,000 bytes.
    const e = estimateWork(recipe(), sources(1000, 1000), { withShards: true, reusableTokenBytes: 0 });
    assert.equal(e.shardBytes, 16000);
    assert.equal(e.peakBytes, 8000 + 16000, "tokens and shards, while packing, outweigh text and tokens");
    const t = estimateWork(recipe("target_tokens: 100\n"), sources(1000, 1000), { withShards: true, reusableTokenBytes: 0 });
    assert.equal(t.shardBytes, 400);
  });

  it("leaves out another partition's files and the token chunks a rerun reuses", () => {
    const e = estimateWork(recipe(), sources(1000, 1000, false), { withShards: false, reusableTokenBytes: 1500 });
    assert.equal(e.files, 1);
    assert.equal(e.textBytes, 1000);
    assert.equal(e.tokenBytes, 500);
  });

  it("refuses before reading, with the numbers, only when the text and its tokens exceed the free space (the shards are checked after dedup)", () => {
    const e = estimateWork(recipe(), sources(1000, 1000), { withShards: true, reusableTokenBytes: 0 });
    assert.doesNotThrow(() => checkWorkSpace(e, "/w", 12000), "the shards' 16,000 bytes are not counted yet");
    assert.doesNotThrow(() => checkWorkSpace(e, "/w", undefined));
    assert.throws(
      () => checkWorkSpace(e, "/w", 11999),
      /disk: about 23 KiB in \/w at the build's peak, from 2 input file\(s\) of 2 KiB .*: the text and its tokens alone need 12 KiB — not enough\./,
    );
  });
});

describe("disk check before tokenising", () => {
  it("needs the tokens of the text dedup kept, and the shards beyond the text's database it replaces", () => {
    // 1,000 and 3,000 bytes kept: 2,000 tokens, 8,000 bytes of chunks; 2 epochs of a 1:3 mixture, 16,000 bytes of shards.
    const e = estimateAfterDedup(recipe(), [1000, 3000], { withShards: true, reusableTokenBytes: 0, corpusDbBytes: 5000 });
    assert.deepEqual(e, { keptBytes: 4000, tokenBytes: 8000, shardBytes: 16000, needBytes: 8000 + 11000 });
    assert.doesNotThrow(() => checkTokenizeSpace(e, "/w", 19000));
    assert.throws(
      () => checkTokenizeSpace(e, "/w", 18999),
      /disk: the 4 KiB of text left after dedup need about 19 KiB more in \/w \(8 KiB of token chunks at 2 bytes of text a token, then 16 KiB of shards where the text's database was\); 19 KiB free there — not enough\./,
    );
    assert.doesNotThrow(() => checkTokenizeSpace(e, "/w", 8000, true), "plan stages no shards");
    const reused = estimateAfterDedup(recipe(), [1000, 3000], { withShards: false, reusableTokenBytes: 9000, corpusDbBytes: 5000 });
    assert.equal(reused.needBytes, 0);
  });
});
