/** pack-stream: the packed token stream assembled in order from the chunk files, in memory or through bin files. */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { binSource, concatSources, scatterToBins } from "../../../src/pipeline/stages/pack-bins.ts";
import { assembleRange, assembleStream, binsOf, chunkSource, type StreamLayout, type StreamOptions } from "../../../src/pipeline/stages/pack-stream.ts";
import { CHUNK_DOCS } from "../../../src/pipeline/stages/tokenize.ts";
import { chunkStore, layoutInMemory, randomDocs } from "../../helpers/token-chunks.ts";

const dir = mkdtempSync(join(tmpdir(), "chuxin-pack-stream-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const BOS = 100100;
const EOS = 100101;
const shortDocs = randomDocs(2 * CHUNK_DOCS + 300, 40, 11);
const shortStore = chunkStore(dir, "docs", shortDocs);
// Documents longer than a bin writer's buffer (8,192 words at the smallest), which it writes past its buffers.
const longDocs = randomDocs(90, 30000, 7);
const longStore = chunkStore(dir, "long", longDocs);

/** A shuffled stream over the documents: some picked twice (two passes), some never; cut short of its end. */
function layoutOf(bosId: number | undefined, lengthened = -1, docs = shortDocs): { layout: StreamLayout; expected: Uint32Array } {
  let seed = 5;
  const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8; // the high bits: an LCG's low bits repeat
  const ords: number[] = [];
  for (let ord = 0; ord < docs.length; ord++) {
    const times = next() % 4 === 0 ? 0 : next() % 5 === 0 ? 2 : 1;
    for (let t = 0; t < times; t++) ords.push(ord);
  }
  for (let i = ords.length - 1; i > 0; i--) {
    const j = next() % (i + 1);
    [ords[i], ords[j]] = [ords[j]!, ords[i]!];
  }
  const lead = bosId !== undefined ? 1 : 0;
  const stream: number[] = [];
  const picks = { ord: Uint32Array.from(ords), start: new Float64Array(ords.length), length: new Uint32Array(ords.length) };
  ords.forEach((ord, k) => {
    picks.start[k] = stream.length;
    picks.length[k] = docs[ord]!.length + lead + 1 + (k === lengthened ? 1 : 0);
    if (lead) stream.push(bosId!);
    stream.push(...docs[ord]!, EOS);
  });
  const total = stream.length - 37;
  return { layout: layoutInMemory(picks, total, bosId, EOS), expected: Uint32Array.from(stream.slice(0, total)) };
}

async function assemble(layout: StreamLayout, options: StreamOptions, store = shortStore): Promise<{ tokens: Uint32Array; sawBins: boolean }> {
  const parts: Uint32Array[] = [];
  let sawBins = false;
  await assembleStream(store, layout, options, async (tokens) => {
    parts.push(tokens.slice());
    sawBins ||= existsSync(options.workDir) && readdirSync(options.workDir).length > 0;
  });
  const tokens = new Uint32Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    tokens.set(p, at);
    at += p.length;
  }
  return { tokens, sawBins };
}

describe("pack stream", () => {
  const cases: [string, Omit<StreamOptions, "workDir">, boolean][] = [
    ["in memory, straight from the chunk files", { bufferTokens: 1 << 20, fanout: 256, writeBufferBytes: 1 << 20 }, false],
    ["through one level of bins", { bufferTokens: 20000, fanout: 256, writeBufferBytes: 1 << 20 }, true],
    ["through bins scattered again, level after level (fan-out 2, 97-token buffer)", { bufferTokens: 97, fanout: 2, writeBufferBytes: 4096 }, true],
  ];
  for (const bos of [undefined, BOS]) {
    for (const [name, sizes, bins] of cases) {
      it(`gives the stream's exact tokens ${name}${bos !== undefined ? ", with BOS" : ""}`, async () => {
        const { layout, expected } = layoutOf(bos);
        const workDir = join(dir, `bins-${name.length}-${bos ?? 0}`);
        const got = await assemble(layout, { ...sizes, workDir });
        assert.equal(got.tokens.length, expected.length);
        assert.ok(got.tokens.every((t, i) => t === expected[i]), "same tokens in the same order");
        assert.equal(got.sawBins, bins, bins ? "bin files were written" : "no bin file was written");
        assert.equal(existsSync(workDir), false, "the bin folder is removed");
      });
    }
  }

  it("gives the exact tokens of documents longer than a bin's write buffer, through bins scattered again", async () => {
    const { layout, expected } = layoutOf(BOS, -1, longDocs);
    const workDir = join(dir, "bins-long");
    const got = await assemble(layout, { bufferTokens: 40000, fanout: 3, writeBufferBytes: 4096, workDir }, longStore);
    assert.ok(got.sawBins, "bin files were written");
    assert.equal(got.tokens.length, expected.length);
    assert.ok(got.tokens.every((t, i) => t === expected[i]), "same tokens in the same order");
    assert.equal(existsSync(workDir), false, "the bin folder is removed");
  });

  it("refuses a plan whose document length disagrees with its chunk, and leaves no bins behind", async () => {
    const { layout } = layoutOf(undefined, 3);
    const workDir = join(dir, "bins-bad");
    await assert.rejects(
      assemble(layout, { bufferTokens: 500, fanout: 4, workDir, writeBufferBytes: 1 << 16 }),
      (e: Error) => /document at read position \d+ has \d+ tokens in its chunk and \d+ in the plan; rerun the build/.test(e.message),
    );
    assert.equal(existsSync(workDir), false);
  });

  it("scatters the stream into uneven ranges (one empty) that each gather to their own part of it, from several bin files, through bins again when bigger than the buffer", async () => {
    const { layout, expected } = layoutOf(BOS);
    const total = layout.total;
    const edges = [0, 1234, 1234, Math.floor(total / 2) + 17, total];
    const folders = ["a", "b"].map((t) => join(dir, `ranges-${t}`));
    // Two scatters of one stream, as two partitions' would be: the picks of the first and of the second half of the
    // documents, each into one bin per range.
    const half = Math.floor(shortDocs.length / 2);
    for (const [n, folder] of folders.entries()) {
      mkdirSync(folder, { recursive: true });
      const part: StreamLayout = {
        ...layout,
        picksAt: async (from, to) => {
          const run = await layout.picksAt(from, to);
          const keep = Array.from(run.readPos.keys()).filter((i) => (run.readPos[i]! < half) === (n === 0));
          return { readPos: Float64Array.from(keep, (i) => run.readPos[i]!), start: Float64Array.from(keep, (i) => run.start[i]!), length: Uint32Array.from(keep, (i) => run.length[i]!) };
        },
      };
      await scatterToBins(chunkSource(shortStore, part), edges, edges.slice(1).map((_, j) => join(folder, `bin-${j}`)), 1 << 16);
    }
    for (let j = 0; j + 1 < edges.length; j++) {
      const [lo, hi] = [edges[j]!, edges[j + 1]!];
      const source = concatSources(folders.map((f) => binSource(join(f, `bin-${j}`))));
      const got: number[] = [];
      const workDir = join(dir, `ranges-gather-${j}`);
      await assembleRange(source, lo, hi, { bufferTokens: 500, fanout: 3, writeBufferBytes: 4096, workDir }, async (t) => void got.push(...t));
      assert.equal(got.length, hi - lo, `range ${j}: every token`);
      assert.ok(got.every((t, i) => t === expected[lo + i]), `range ${j}: the stream's tokens in order`);
      assert.equal(existsSync(workDir), false, "the gather's own bins are removed");
    }
    // A record outside the edges is refused, not dropped.
    await assert.rejects(
      scatterToBins(async (visit) => void (await visit(total, Uint32Array.of(1))), edges, edges.slice(1).map((_, j) => join(dir, `stray-${j}`)), 1 << 16),
      /lies outside its bin/,
    );
  });

  it("splits a range into non-empty bins that cover it exactly, within the fan-out", () => {
    for (let tokens = 1; tokens <= 300; tokens++) {
      for (const buffer of [1, 2, 3, 7, 64, 1000]) {
        for (const fanout of [2, 3, 5, 256]) {
          const { count, width } = binsOf(tokens, buffer, fanout);
          const at = `${tokens} tokens, buffer ${buffer}, fan-out ${fanout}`;
          assert.ok(count >= 1 && count <= fanout, at);
          assert.ok((count - 1) * width < tokens && count * width >= tokens, `${at}: bins cover the range, the last one not empty`);
          if (Math.ceil(tokens / buffer) <= fanout) assert.ok(width <= buffer, `${at}: bins fit the buffer`);
        }
      }
    }
  });
});
