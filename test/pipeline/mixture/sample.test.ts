/** The mixture plan: targets and passes (sample.ts), the picks and the stream as tables of the work database (plan-tables.ts). */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { fillPicks, layOutStream } from "../../../src/pipeline/mixture/plan-tables.ts";
import { apportion, planPasses, sourcePlans, type SourceDocs, type SourcePlan } from "../../../src/pipeline/mixture/sample.ts";
import { BuildDb, sqlString } from "../../../src/util/duckdb.ts";
import { keyedHash64Words } from "../../../src/util/hash.ts";

interface TestSource {
  name: string;
  weight: number;
  lengths: number[];
  maxEpochs?: number;
  hashes?: string[];
}

const hashesOf = (s: TestSource) => s.hashes ?? s.lengths.map((_, i) => `${s.name}-${i}`);

function seeded(n: number, seed: number): number[] {
  let x = seed;
  return Array.from({ length: n }, () => ((x = (x * 1103515245 + 12345) % 2 ** 31), 20 + (x % 400)));
}

interface Pick {
  source: number;
  ord: number;
  pass: number;
  tokens: number;
}

/** The sources' documents as plan_docs (ords in source order), planned: the plans and every pick in each source's order. */
async function planOf(db: BuildDb, sources: TestSource[], seed: number, target: number | undefined): Promise<{ plans: SourcePlan[]; picks: Pick[] }> {
  const rows: string[] = [];
  let ord = 0;
  sources.forEach((s, i) => s.lengths.forEach((len, j) => rows.push(`(${ord}, ${ord++}, ${i}, 0, ${j}, ${sqlString(hashesOf(s)[j]!)}, ${len})`)));
  await db.run(
    `CREATE OR REPLACE TABLE plan_docs AS SELECT ord::UINTEGER AS ord, read_pos::BIGINT AS read_pos, source_idx::INTEGER AS source_idx, file_idx::INTEGER AS file_idx,
       row_idx::BIGINT AS row_idx, doc_hash, tokens::UINTEGER AS tokens FROM (VALUES ${rows.join(", ")}) t(ord, read_pos, source_idx, file_idx, row_idx, doc_hash, tokens)`,
  );
  const docs: SourceDocs[] = sources.map((s) => ({ name: s.name, weight: s.weight, maxEpochs: s.maxEpochs ?? 4, documents: s.lengths.length, tokens: s.lengths.reduce((a, b) => a + b, 0) }));
  const passes = planPasses(docs, target);
  const taken = await fillPicks(db, docs, passes, seed, "TRUE", 0);
  const picks = (await db.rows<{ s: number; ord: bigint; pass: number; tokens: number }>(`SELECT source_idx AS s, read_pos AS ord, pass, tokens FROM picks ORDER BY source_idx, k`)).map(
    (r) => ({ source: r.s, ord: Number(r.ord), pass: r.pass, tokens: r.tokens }),
  );
  return { plans: sourcePlans(docs, passes, taken), picks };
}

/** The plan as the in-memory sampler made it before the plan moved into DuckDB: a JavaScript sort by the keyed hash. */
function referencePicks(sources: TestSource[], seed: number, plans: SourcePlan[]): Pick[] {
  const out: Pick[] = [];
  let first = 0;
  sources.forEach((s, i) => {
    const hashes = hashesOf(s);
    const order = (pass: number) => {
      const key = s.lengths.map((_, j) => keyedHash64Words(seed, s.name, pass, hashes[j]!));
      return s.lengths.map((_, j) => j).sort((a, b) => key[a]![0] - key[b]![0] || key[a]![1] - key[b]![1] || a - b);
    };
    const avail = s.lengths.reduce((a, b) => a + b, 0);
    const target = Math.min(plans[i]!.targetTokens, Math.floor((s.maxEpochs ?? 4) * avail));
    const full = Math.floor(target / avail);
    for (let pass = 0; pass < full; pass++) for (const j of order(pass)) out.push({ source: i, ord: first + j, pass, tokens: s.lengths[j]! });
    let selected = full * avail;
    if (selected < target) {
      for (const j of order(full)) {
        const short = target - selected;
        if (short <= 0 || s.lengths[j]! - short > short) break;
        out.push({ source: i, ord: first + j, pass: full, tokens: s.lengths[j]! });
        selected += s.lengths[j]!;
      }
    }
    first += s.lengths.length;
  });
  return out;
}

describe("mixture planning", () => {
  let db: BuildDb;
  before(async () => {
    db = await BuildDb.open(":memory:");
  });
  after(() => db.close());

  it("apportions by largest remainder, ties to the earlier source", () => {
    assert.deepEqual(apportion(10, [1, 1, 1]), [4, 3, 3]);
    assert.deepEqual(apportion(100, [0.7, 0.3]), [70, 30]);
    assert.equal(apportion(12345, [0.2, 0.3, 0.5]).reduce((a, b) => a + b), 12345);
  });

  it("picks the documents, passes and order the JavaScript keyed-hash sort gives, over seeds and targets", async () => {
    const sources = [{ name: "web", weight: 0.5, lengths: seeded(300, 1) }, { name: "代码 'q'", weight: 0.3, lengths: seeded(40, 2) }, { name: "b", weight: 0.2, lengths: seeded(90, 3) }];
    for (const seed of [1, 42, 2 ** 31 - 1]) {
      for (const target of [5000, 40000, 60000, undefined]) {
        const { plans, picks } = await planOf(db, sources, seed, target);
        assert.deepEqual(picks, referencePicks(sources, seed, plans), `seed ${seed}, target ${target}`);
        plans.forEach((p, i) => {
          const mine = picks.filter((k) => k.source === i);
          assert.equal(p.documentsSelected, mine.length);
          assert.equal(p.tokensSelected, mine.reduce((a, k) => a + k.tokens, 0));
        });
      }
    }
  });

  it("hits each target within one document, repeating scarce sources in whole passes plus a part", async () => {
    const { plans, picks } = await planOf(db, [{ name: "a", weight: 0.5, lengths: seeded(300, 1) }, { name: "b", weight: 0.5, lengths: seeded(40, 2) }], 7, 40000);
    const maxDoc = 420;
    for (const p of plans) assert.ok(Math.abs(p.tokensSelected - p.targetTokens) <= maxDoc / 2, `${p.name}: ${p.tokensSelected} vs ${p.targetTokens}`);
    const pb = plans[1]!;
    assert.ok(pb.epochs > 1 && pb.epochs <= 4);
    const fullPasses = Math.floor(pb.targetTokens / pb.tokensAvailable);
    for (let pass = 0; pass < fullPasses; pass++) assert.equal(picks.filter((p) => p.source === 1 && p.pass === pass).length, 40, `pass ${pass} is whole`);
  });

  it("orders documents by a keyed hash of (seed, source, document), not input order", async () => {
    const lengths = seeded(50, 3);
    const names = lengths.map((_, i) => `a-${i}`);
    const forward = await planOf(db, [{ name: "a", weight: 1, lengths, hashes: names }], 1, 3000);
    const backward = await planOf(db, [{ name: "a", weight: 1, lengths: [...lengths].reverse(), hashes: [...names].reverse() }], 1, 3000);
    assert.deepEqual(
      forward.picks.map((p) => names[p.ord]),
      backward.picks.map((p) => [...names].reverse()[p.ord]),
    );
    const otherSeed = await planOf(db, [{ name: "a", weight: 1, lengths, hashes: names }], 2, 3000);
    assert.notDeepEqual(forward.picks.map((p) => p.ord), otherSeed.picks.map((p) => p.ord));
  });

  it("refuses a target that needs more than max_epochs, naming the source and the epochs", () => {
    const docs = (name: string, lengths: number[]): SourceDocs => ({ name, weight: 0.5, maxEpochs: 4, documents: lengths.length, tokens: lengths.reduce((a, b) => a + b, 0) });
    assert.throws(() => planPasses([docs("big", seeded(100, 4)), docs("tiny", [100, 100])], 10000), /source 'tiny'.*needs 25\.00 epochs, over max_epochs 4/);
  });

  it("without target_tokens, takes the most no source must repeat beyond max_epochs to fill", async () => {
    const { plans } = await planOf(db, [{ name: "a", weight: 0.5, lengths: Array(100).fill(100) }, { name: "b", weight: 0.5, lengths: Array(10).fill(100) }], 1, undefined);
    assert.equal(plans[1]!.epochs, 4);
    assert.equal(plans[0]!.tokensSelected, 4000);
  });

  it("interleaves so that every prefix stays close to the target mixture, each pick starting where the one before ends", async () => {
    const sources = [0.6, 0.3, 0.1].map((weight, i) => ({ name: "abc"[i]!, weight, lengths: Array(500).fill(10) }));
    const { plans } = await planOf(db, sources, 1, 3000);
    const total = await layOutStream(db, plans);
    const layout = await db.rows<{ start: bigint; length: number; s: number }>(`SELECT start, length, source_idx AS s FROM layout ORDER BY start`);
    assert.equal(layout.length, plans.reduce((a, p) => a + p.documentsSelected, 0));
    const seen = [0, 0, 0];
    let at = 0;
    layout.forEach((row, k) => {
      assert.equal(Number(row.start), at);
      at += row.length;
      seen[row.s]!++;
      [0.6, 0.3, 0.1].forEach((share, i) => assert.ok(Math.abs(seen[i]! - share * (k + 1)) <= 1, `prefix ${k + 1}, source ${i}`));
    });
    assert.equal(total, at);
  });
});
