import assert from "node:assert/strict";
import { mkdtempSync, rmSync, truncateSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { CHUNK_DOCS } from "../../../src/pipeline/stages/tokenize.ts";
import { chunkStore, randomDocs } from "../../helpers/token-chunks.ts";

const dir = mkdtempSync(join(tmpdir(), "chuxin-tokens-"));
after(() => rmSync(dir, { recursive: true, force: true }));

describe("token store (ids read from the tokenised chunk files)", () => {
  it("reads each chunk whole: its documents' lengths and ids, in ord order", () => {
    const docs = randomDocs(3 * CHUNK_DOCS + 100, 23, 7);
    const store = chunkStore(dir, "order", docs);
    assert.equal(store.chunkCount, 4);
    assert.equal(store.documents, docs.length);
    // Out of order, so a read never leans on the one before.
    for (const chunk of [2, 0, 3, 1]) {
      const read = store.readChunk(chunk);
      let at = 0;
      assert.equal(read.lengths.length, Math.min(CHUNK_DOCS, docs.length - chunk * CHUNK_DOCS));
      read.lengths.forEach((_, i) => {
        const ord = chunk * CHUNK_DOCS + i;
        assert.deepEqual(read.ids.slice(at, at + read.lengths[i]!), docs[ord], `document ${ord}`);
        at += read.lengths[i]!;
      });
      assert.equal(at, read.ids.length);
    }
  });

  it("refuses a chunk file changed since tokenisation, naming it and the fix", () => {
    const docs = randomDocs(CHUNK_DOCS + 5, 23, 7);
    const store = chunkStore(dir, "changed", docs);
    const file = store.chunks()[1]!.file;
    truncateSync(file, 20);
    assert.deepEqual(store.readChunk(0).ids.slice(0, docs[0]!.length), docs[0]);
    assert.throws(() => store.readChunk(1), (e: Error) => e.message.includes(file) && /changed since it was tokenised .*delete it and rebuild/.test(e.message));
  });
});
