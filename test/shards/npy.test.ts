import assert from "node:assert/strict";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { npyHeader, parseNpyHeader, readNpyInfo, readSequences } from "../../src/shards/npy.ts";

describe("npy shards", () => {
  it("writes a format 1.0 header padded to 64 bytes that parses back", () => {
    const h = npyHeader(115, 4096);
    assert.equal(h.length % 64, 0);
    assert.equal(h.subarray(0, 8).toString("latin1"), "\x93NUMPY\x01\x00");
    assert.match(h.toString("latin1"), /\{'descr': '<u4', 'fortran_order': False, 'shape': \(115, 4096\), \} *\n$/);
    assert.deepEqual(parseNpyHeader(h, "x"), { rows: 115, cols: 4096, dataOffset: h.length });
  });

  it("reads sequences back and refuses wrong dtypes and truncated files", async () => {
    const dir = await mkdtemp(join(tmpdir(), "chuxin-npy-"));
    const data = Buffer.alloc(3 * 4 * 4);
    for (let i = 0; i < 12; i++) data.writeUInt32LE(100000 + i, 4 * i);
    await writeFile(join(dir, "ok.npy"), Buffer.concat([npyHeader(3, 4), data]));
    const info = await readNpyInfo(join(dir, "ok.npy"));
    assert.deepEqual(Array.from(await readSequences(join(dir, "ok.npy"), info, 1, 1)), [100004, 100005, 100006, 100007]);
    await writeFile(join(dir, "short.npy"), Buffer.concat([npyHeader(3, 4), data.subarray(4)]));
    await assert.rejects(readNpyInfo(join(dir, "short.npy")), /short\.npy: 172 bytes, the header's shape needs 176/);
    const f8 = Buffer.from(npyHeader(3, 4).toString("latin1").replace("<u4", "<f4"), "latin1");
    assert.throws(() => parseNpyHeader(f8, "f.npy"), /f\.npy: dtype <f4, expected '<u4'/);
  });
});
