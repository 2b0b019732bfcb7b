import assert from "node:assert/strict";
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { CHUNK_DOCS, encodeChunk, TokenStore } from "../../src/pipeline/tokenize.ts";

const dir = mkdtempSync(join(tmpdir(), "chuxin-tokens-"));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Chunk files for `docs` documents of pseudo-random lengths (some empty) and ids, as tokenisation writes them. */
function writeChunks(docs: number, tag: string) {
  const lengths = new Uint32Array(docs);
  const expected: Uint32Array[] = [];
  const files: string[] = [];
  const starts: Uint32Array[] = [];
  const idCounts: number[] = [];
  let seed = 7;
  const next = () => (seed = (seed * 1103515245 + 12345) >>> 0);
  for (let first = 0; first < docs; first += CHUNK_DOCS) {
    const count = Math.min(CHUNK_DOCS, docs - first);
    const chunkLengths = new Uint32Array(count);
    const s = new Uint32Array(count);
    const ids: number[] = [];
    for (let i = 0; i < count; i++) {
      chunkLengths[i] = next() % 23;
      s[i] = ids.length;
      const doc = Uint32Array.from({ length: chunkLengths[i]! }, () => next() % 100015);
      expected.push(doc);
      ids.push(...doc);
    }
    lengths.set(chunkLengths, first);
    const file = join(dir, `${tag}-${files.length}.tok`);
    writeFileSync(file, encodeChunk(chunkLengths, Uint32Array.from(ids)));
    files.push(file);
    starts.push(s);
    idCounts.push(ids.length);
  }
  return { lengths, expected, files, starts, idCounts };
}

describe("token store (ids read from the tokenised chunk files)", () => {
  it("returns every document's ids in any order, with fewer files open than chunks", () => {
    const c = writeChunks(3 * CHUNK_DOCS + 100, "order");
    const store = new TokenStore(c.files, c.starts, c.idCounts, c.lengths, 2);
    const order = Array.from({ length: c.lengths.length }, (_, i) => (i * 7919) % c.lengths.length);
    for (const ord of order) assert.deepEqual(store.tokensOf(ord), c.expected[ord], `document ${ord}`);
    store.close();
  });

  it("refuses a chunk file changed since tokenisation, naming it and the fix", () => {
    const c = writeChunks(CHUNK_DOCS + 5, "changed");
    truncateSync(c.files[1]!, 20);
    const store = new TokenStore(c.files, c.starts, c.idCounts, c.lengths);
    assert.deepEqual(store.tokensOf(3), c.expected[3]);
    assert.throws(() => store.tokensOf(CHUNK_DOCS + 1), (e: Error) => e.message.includes(c.files[1]!) && /changed since it was tokenised .*delete it and rebuild/.test(e.message));
    store.close();
  });
});
