/**
 * Pack's reads, as the corpus outgrows the page cache: the same shuffled stream assembled two ways in one run.
 *  - per document: each pick's ids read where tokenisation left them (a pread per document, windows of 16,384
 *    picks sorted by document, every chunk file kept open): what pack did before pack-stream.ts, reimplemented here;
 *  - scatter/gather: pack-stream.ts (the chunks read once in order, bins written and read back in order).
 * Each runs warm (the chunks just written, in the page cache) and cold (after dropping the page cache, which needs
 * root: `echo 1 > /proc/sys/vm/drop_caches`; skipped with a note otherwise). The stream is consumed, not written.
 *   npx tsx bench/pack-read.ts [documents=400000] [work-dir]      about 650 tokens a document, 1 GB of tokens at 400 k
 */
import { execSync } from "node:child_process";
import { closeSync, mkdirSync, mkdtempSync, openSync, readSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assembleStream, streamOptionsFor } from "../src/pipeline/stages/pack-stream.ts";
import { CHUNK_DOCS, encodeChunk, TokenStore } from "../src/pipeline/stages/tokenize.ts";
import { layoutInMemory } from "../test/helpers/token-chunks.ts";

const docs = Number(process.argv[2] ?? 400000);
const work = process.argv[3] ?? mkdtempSync(join(tmpdir(), "chuxin-pack-read-"));
mkdirSync(work, { recursive: true });
let seed = 1;
const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8;

// Chunk files as tokenisation writes them; lengths 1..1300 (mean about 650).
const files: string[] = [];
const docCounts: number[] = [];
const idCounts: number[] = [];
const lengths = new Uint32Array(docs);
for (let first = 0; first < docs; first += CHUNK_DOCS) {
  const count = Math.min(CHUNK_DOCS, docs - first);
  for (let i = 0; i < count; i++) lengths[first + i] = 1 + (next() % 1300);
  const chunkLengths = lengths.subarray(first, first + count);
  const ids = new Uint32Array(chunkLengths.reduce((a, b) => a + b, 0));
  for (let i = 0; i < ids.length; i++) ids[i] = next() % 102400;
  const file = join(work, `chunk-${files.length}.tok`);
  writeFileSync(file, encodeChunk(chunkLengths, ids));
  files.push(file);
  docCounts.push(count);
  idCounts.push(ids.length);
}
const store = new TokenStore(files, docCounts, idCounts);
const totalIds = idCounts.reduce((a, b) => a + b, 0);

// One pass over every document, shuffled.
const order = Uint32Array.from({ length: docs }, (_, i) => i);
for (let i = docs - 1; i > 0; i--) {
  const j = next() % (i + 1);
  [order[i], order[j]] = [order[j]!, order[i]!];
}
const picks = { ord: order, start: new Float64Array(docs), length: new Uint32Array(docs) };
let streamTokens = 0;
for (let k = 0; k < docs; k++) {
  picks.start[k] = streamTokens;
  picks.length[k] = lengths[order[k]!]! + 1;
  streamTokens += picks.length[k]!;
}
const layout = layoutInMemory(picks, streamTokens, undefined, 100001);

let checksum = 0;
const consume = (ids: Uint32Array) => {
  for (let i = 0; i < ids.length; i += 4096) checksum = (checksum + ids[i]!) >>> 0;
};

function perDocument(): void {
  const HEADER = 44;
  const fds = files.map((f) => openSync(f, "r"));
  const startIn = new Float64Array(docs);
  for (let c = 0; c < files.length; c++) {
    for (let i = 0, at = 0; i < CHUNK_DOCS && c * CHUNK_DOCS + i < docs; i++) {
      const ord = c * CHUNK_DOCS + i;
      startIn[ord] = at;
      at += lengths[ord]!;
    }
  }
  try {
    for (let w = 0; w < docs; w += 16384) {
      const window = Array.from(order.subarray(w, Math.min(docs, w + 16384))).sort((a, b) => a - b);
      for (const ord of window) {
        const c = Math.floor(ord / CHUNK_DOCS);
        const chunkDocs = Math.min(CHUNK_DOCS, docs - c * CHUNK_DOCS);
        const ids = new Uint32Array(lengths[ord]!);
        readSync(fds[c]!, new Uint8Array(ids.buffer), 0, ids.byteLength, HEADER + 4 * (chunkDocs + startIn[ord]!));
        consume(ids);
      }
    }
  } finally {
    for (const fd of fds) closeSync(fd);
  }
}

async function scatterGather(): Promise<void> {
  // A 1 GB budget's share: 100 MiB.
  await assembleStream(store, layout, streamOptionsFor(100 * 2 ** 20, join(work, "bins")), async (ids) => consume(ids));
}

function dropCache(): boolean {
  try {
    execSync("sync; echo 1 > /proc/sys/vm/drop_caches", { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

async function time(fn: () => void | Promise<void>): Promise<number> {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

console.log(`${docs.toLocaleString("en-US")} documents in ${files.length} chunks, ${(4 * totalIds / 1e9).toFixed(2)} GB of ids; bins of ${(streamOptionsFor(100 * 2 ** 20, "").bufferTokens * 4 / 2 ** 20).toFixed(0)} MiB`);
const rows: [string, string, number][] = [];
for (const cache of ["warm", "cold"] as const) {
  for (const [name, fn] of [["per document", perDocument], ["scatter/gather", scatterGather]] as const) {
    if (cache === "cold" && !dropCache()) {
      console.log("cold: skipped (dropping the page cache needs root)");
      break;
    }
    if (cache === "warm") await fn(); // warm: a first run fills the cache
    const s = await time(fn);
    rows.push([cache, name, s]);
    console.log(`${cache.padEnd(5)} ${name.padEnd(15)} ${s.toFixed(2).padStart(7)} s  ${((1e6 * s) / docs).toFixed(1).padStart(6)} us/doc  ${((4 * totalIds) / 1e6 / s).toFixed(0).padStart(5)} MB/s of ids`);
  }
}
for (const cache of ["warm", "cold"]) {
  const [a, b] = [rows.find((r) => r[0] === cache && r[1] === "per document"), rows.find((r) => r[0] === cache && r[1] === "scatter/gather")];
  if (a && b) console.log(`${cache}: scatter/gather takes ${(b[2] / a[2]).toFixed(2)}x the time of per-document reads`);
}
console.log(`checksum ${checksum}`);
if (process.argv[3] === undefined) rmSync(work, { recursive: true, force: true });
