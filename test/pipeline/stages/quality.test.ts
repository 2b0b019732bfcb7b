/**
 * The quality filters' rules (native/src/text/quality.cpp through the addon), each on hand-written documents just
 * inside and just outside its threshold, with the other rules of its preset relaxed so the one under test decides;
 * then the tables the addon and quality-presets.ts declare, and the stage over a build's rows.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { loadAddon } from "../../../src/native/addon.ts";
import { QUALITY_PARAMS, QUALITY_PRESET_BITS, QUALITY_RULES, qualityReason, type QualityPreset } from "../../../src/recipe/quality-presets.ts";
import { createIngestTables, DOCUMENTS } from "../../../src/pipeline/schema.ts";
import { qualityFilter } from "../../../src/pipeline/stages/quality.ts";
import { parseRecipe } from "../../../src/recipe/load.ts";
import { BuildDb } from "../../../src/util/duckdb.ts";
import { repoRoot } from "../../helpers/paths.ts";

/** A value for each threshold under which its rule never fails. */
const RELAXED: Record<string, number> = {
  "gopher_quality.min_doc_words": 0,
  "gopher_quality.min_avg_word_length": 0,
  "gopher_quality.min_alpha_words_ratio": 0,
  "gopher_quality.min_stop_words": 0,
  "c4.min_num_sentences": 0,
  "c4.min_words_per_line": 0,
  "fineweb.line_punct_thr": -1,
  "fineweb.short_line_length": 30,
};
const relaxed = (name: string) => RELAXED[name] ?? 1e18;

/** The rule (skip reason, or "pass") of each text under `preset`, with only `keep` (threshold names) at their defaults, or `set`. */
async function judge(preset: QualityPreset, keep: string[], texts: string[], set: Record<string, number> = {}): Promise<string[]> {
  const params = Float64Array.from(QUALITY_PARAMS, (q) => {
    const name = `${q.preset}.${q.name}`;
    return set[name] ?? (q.preset === preset && keep.includes(q.name) ? q.default : relaxed(name));
  });
  const rules = await loadAddon().qualityCheck(texts, new Uint8Array(texts.length).fill(QUALITY_PRESET_BITS[preset]), params, 2);
  return Array.from(rules, (r) => (r === 0 ? "pass" : qualityReason(QUALITY_RULES[r - 1]!)));
}

/** Distinct alphabetic words of a given length: word(5, 0) = "baaaa"-like, never a stop word. */
function word(length: number, i: number): string {
  const letters = "bcdfghjklmnpqrstvwxz";
  let w = "";
  let n = i;
  for (let k = 0; k < length; k++) {
    w += letters[n % letters.length];
    n = Math.floor(n / letters.length);
  }
  return w;
}
const words = (count: number, length = 5, from = 0) => Array.from({ length: count }, (_, i) => word(length, from + i));
/** Pads `text` with a last line of one unique word so it is exactly `length` code points long. */
const padTo = (text: string, length: number) => {
  const room = length - text.length - 1;
  assert.ok(room >= 1, `padTo: ${text.length} is already past ${length}`);
  return `${text}\n${"y".repeat(room)}`;
};

describe("gopher_quality rules, at their thresholds", () => {
  const doc = (n: number, extra = "") => ["the", "of", ...words(n - 2)].join(" ") + extra;
  it("short_doc: 50 words pass, 49 fail", async () => {
    assert.deepEqual(await judge("gopher_quality", ["min_doc_words"], [doc(50), doc(49)]), ["pass", "gopher_quality.short_doc"]);
  });
  it("long_doc: 100,000 words pass, 100,001 fail", async () => {
    assert.deepEqual(await judge("gopher_quality", ["max_doc_words"], [doc(100_000), doc(100_001)]), ["pass", "gopher_quality.long_doc"]);
  });
  it("mean word length: 3 and 10 characters pass, just under 3 and just over 10 fail", async () => {
    const ofLengths = (lengths: number[]) => lengths.map((l, i) => word(l, i)).join(" ");
    const texts = [ofLengths(Array(50).fill(3)), ofLengths([...Array(49).fill(3), 2]), ofLengths(Array(50).fill(10)), ofLengths([...Array(49).fill(10), 11])];
    assert.deepEqual(await judge("gopher_quality", ["min_avg_word_length", "max_avg_word_length"], texts), [
      "pass",
      "gopher_quality.below_avg_word_length",
      "pass",
      "gopher_quality.above_avg_word_length",
    ]);
  });
  it("hashes and ellipses: 0.1 a word passes, more fails", async () => {
    const body = words(50);
    const withEach = (mark: string, n: number) => body.map((w, i) => (i < n ? `${w}${mark}` : w)).join(" ");
    assert.deepEqual(await judge("gopher_quality", ["max_symbol_word_ratio"], [withEach(" #", 5), withEach(" #", 6), withEach("...", 5), withEach("…", 6)]), [
      "pass",
      "gopher_quality.too_many_hashes",
      "pass",
      "gopher_quality.too_many_ellipsis",
    ]);
  });
  it("counts a run of dots as str.count does: a third of its length, rounded down", async () => {
    const body = words(50);
    const withEach = (mark: string, n: number) => body.map((w, i) => (i < n ? `${w}${mark}` : w)).join(" ");
    // 5 × "...." is 5 ellipses (overlapping matches would be 10); 5 × "....." is 5; 3 × "......" is 6.
    assert.deepEqual(await judge("gopher_quality", ["max_symbol_word_ratio"], [withEach("....", 5), withEach(".....", 5), withEach("......", 3)]), [
      "pass",
      "pass",
      "gopher_quality.too_many_ellipsis",
    ]);
  });
  it("bullet lines: 90% pass, all fail; lines ending in an ellipsis: 30% pass, 40% fail", async () => {
    const lines = (bullets: number, ellipses: number) =>
      Array.from({ length: 10 }, (_, i) => `${i < bullets ? "• " : ""}${words(5, 5, 5 * i).join(" ")}${i < ellipses ? "..." : ""}`).join("\n");
    assert.deepEqual(await judge("gopher_quality", ["max_bullet_lines_ratio", "max_ellipsis_lines_ratio"], [lines(9, 0), lines(10, 0), lines(0, 3), lines(0, 4)]), [
      "pass",
      "gopher_quality.too_many_bullets",
      "pass",
      "gopher_quality.too_many_end_ellipsis",
    ]);
  });
  it("words with a letter: 80% pass, 78% fail; stop words: 2 pass, 1 fails", async () => {
    const numeric = (n: number) => [...words(50 - n), ...Array.from({ length: n }, (_, i) => String(1000 + i))].join(" ");
    assert.deepEqual(await judge("gopher_quality", ["min_alpha_words_ratio"], [numeric(10), numeric(11)]), ["pass", "gopher_quality.below_alpha_words"]);
    assert.deepEqual(await judge("gopher_quality", ["min_stop_words"], [`The cat and ${words(20).join(" ")}`, `The cat ${words(20).join(" ")}`]), [
      "pass",
      "gopher_quality.not_enough_stop_words",
    ]);
  });
  it("judges Chinese text by its characters, without the word-length and stop-word rules", async () => {
    const zh = "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。床前明月光，疑是地上霜。举头望明月，低头思故乡。白日依山尽，黄河入海流。欲穷千里目，更上一层楼。";
    const all = QUALITY_PARAMS.filter((q) => q.preset === "gopher_quality").map((q) => q.name);
    assert.deepEqual(await judge("gopher_quality", all, [zh, zh.slice(0, 30)]), ["pass", "gopher_quality.short_doc"]);
  });
});

describe("gopher_repetition rules, at their thresholds", () => {
  it("duplicate paragraphs: 3 of 10 pass, 4 fail; their characters: 0.2 of the text passes, more fails", async () => {
    // `copies` equal paragraphs: the first is not a duplicate, the others are.
    const paras = (copies: number) => Array.from({ length: 10 }, (_, i) => (i >= 10 - copies ? "repeated paragraph here" : words(4, 6, 4 * i).join(" "))).join("\n\n");
    // "A\n\nB\n\nB": B's 10 characters over a text of a + 24 (a = 26: exactly 0.2; a = 25: 10 / 49).
    const chars = (a: number) => `${"a".repeat(a)}\n\n${"b".repeat(10)}\n\n${"b".repeat(10)}`;
    assert.deepEqual(await judge("gopher_repetition", ["dup_para_frac"], [paras(4), paras(5)]), ["pass", "gopher_repetition.dup_para_frac"]);
    assert.deepEqual(await judge("gopher_repetition", ["dup_para_char_frac"], [chars(26), chars(25)]), ["pass", "gopher_repetition.dup_para_char_frac"]);
  });
  it("duplicate lines: 3 of 10 pass, 4 fail; their characters: 0.2 passes, more fails", async () => {
    const lines = (copies: number) => Array.from({ length: 10 }, (_, i) => (i >= 10 - copies ? "repeated line" : words(3, 6, 3 * i).join(" "))).join("\n");
    const chars = (a: number) => `${"a".repeat(a)}\n${"b".repeat(10)}\n${"b".repeat(10)}`;
    assert.deepEqual(await judge("gopher_repetition", ["dup_line_frac"], [lines(4), lines(5)]), ["pass", "gopher_repetition.dup_line_frac"]);
    assert.deepEqual(await judge("gopher_repetition", ["dup_line_char_frac"], [chars(28), chars(27)]), ["pass", "gopher_repetition.dup_line_char_frac"]);
  });
  it("lines that differ in one character, wherever it is, are not duplicates", async () => {
    const base = "abcdefghijk";
    const variants = [0, 3, 4, 7, 8, 10].map((i) => `${base.slice(0, i)}x${base.slice(i + 1)}`);
    const set = { "gopher_repetition.dup_line_frac": 0 };
    assert.deepEqual(await judge("gopher_repetition", [], [[base, ...variants].join("\n"), [base, ...variants, base].join("\n")], set), [
      "pass",
      "gopher_repetition.dup_line_frac",
    ]);
  });
  for (const [n, frac] of [[2, 0.2], [3, 0.18], [4, 0.16]] as const) {
    it(`top ${n}-gram: ${frac} of the characters passes, more fails`, async () => {
      // The n-gram "qq qq …" (n words of 2 letters) 10 times, apart: its characters are 10 × (3n - 1).
      const gram = Array(n).fill("qq").join(" ");
      const body = Array.from({ length: 10 }, (_, i) => `${gram} ${word(6, i)}`).join(" ");
      const top = 10 * (3 * n - 1);
      const inside = Math.ceil(top / frac);
      assert.ok(top / inside <= frac && top / (inside - 1) > frac);
      assert.deepEqual(await judge("gopher_repetition", [`top_${n}_gram`], [padTo(body, inside), padTo(body, inside - 1)]), ["pass", `gopher_repetition.top_${n}_gram`]);
    });
  }
  for (const [n, frac] of [[5, 0.15], [10, 0.1]] as const) {
    it(`duplicated ${n}-grams: ${frac} of the characters passes, more fails`, async () => {
      // n distinct words twice: the second run is one repeated n-gram of n × 6 - 1 characters.
      const run = words(n, 5, 100).join(" ");
      const body = `${run} ${run}`;
      const repeated = run.length;
      const inside = Math.ceil(repeated / frac);
      assert.ok(repeated / inside <= frac && repeated / (inside - 1) > frac);
      assert.deepEqual(await judge("gopher_repetition", [`duplicated_${n}_n_grams`], [padTo(body, inside), padTo(body, inside - 1)]), [
        "pass",
        `gopher_repetition.duplicated_${n}_n_grams`,
      ]);
    });
  }
});

describe("c4 rules", () => {
  const sentence = (i: number) => `${words(3, 5, 3 * i).join(" ")}.`;
  const lines = (n: number, extra: string[] = []) => [...Array.from({ length: n }, (_, i) => sentence(i)), ...extra].join("\n");
  it("too_few_sentences: 5 kept lines pass, 4 fail; a line of 2 words, with javascript, a policy phrase or no end punctuation is not kept", async () => {
    const notKept = ["two words.", "enable javascript to view this.", "read our privacy policy now.", "no terminal punctuation here", "it trails off..."];
    assert.deepEqual(await judge("c4", ["min_num_sentences", "min_words_per_line"], [lines(5), lines(4), ...notKept.map((l) => lines(4, [l]))]), [
      "pass",
      "c4.too_few_sentences",
      ...notKept.map(() => "c4.too_few_sentences"),
    ]);
    assert.deepEqual(await judge("c4", ["min_num_sentences", "min_words_per_line"], [lines(4, ["three words here."])]), ["pass"]);
  });
  it("finds the phrases as substrings in any ASCII case, and not where a non-ASCII letter stands for one of theirs", async () => {
    // A fifth kept line passes the document; a line with javascript or a policy phrase is not kept.
    const notKept = ["enable JavaScript to view this.", "this site abuses cookies here.", "see the TERMS OF USE."];
    const kept = ["enable \u00eaavascript to view this.", "it uses cookie jars.", "use of cookie tins here."];
    assert.deepEqual(await judge("c4", ["min_num_sentences", "min_words_per_line"], [...notKept.map((l) => lines(4, [l])), ...kept.map((l) => lines(4, [l]))]), [
      ...notKept.map(() => "c4.too_few_sentences"),
      ...kept.map(() => "pass"),
    ]);
  });
  it("max_word_length: a line with a 1,000-character word is kept, with 1,001 it is not", async () => {
    const withWord = (l: number) => lines(4, [`a ${"w".repeat(l)} word.`]);
    assert.deepEqual(await judge("c4", ["min_num_sentences", "max_word_length"], [withWord(1000), withWord(1001)]), ["pass", "c4.too_few_sentences"]);
  });
  it("lorem ipsum and a curly bracket on a kept line fail the document; on a line C4 drops they do not", async () => {
    assert.deepEqual(
      await judge("c4", ["min_num_sentences"], [lines(5, ["Lorem ipsum dolor sit amet."]), lines(5, ["lorem ipsum"]), lines(5, ["if (x) { return y; } ok."]), lines(5, ["{"])]),
      ["c4.lorem_ipsum", "pass", "c4.curly_bracket", "pass"],
    );
  });
  it("counts sentences in Chinese lines ending in 。", async () => {
    const zh = ["春眠不觉晓。", "处处闻啼鸟。", "夜来风雨声。", "花落知多少。", "床前明月光。"];
    assert.deepEqual(await judge("c4", ["min_num_sentences", "min_words_per_line"], [zh.join("\n"), zh.slice(0, 4).join("\n")]), ["pass", "c4.too_few_sentences"]);
  });
});

describe("fineweb rules, at their thresholds", () => {
  const long = (i: number, end = ".") => `${words(6, 6, 6 * i).join(" ")}${end}`;
  it("line_punct_ratio: 13% of lines ending in punctuation pass, 12% fail", async () => {
    const text = (ending: number) => Array.from({ length: 100 }, (_, i) => long(i, i < ending ? "." : "")).join("\n");
    assert.deepEqual(await judge("fineweb", ["line_punct_thr"], [text(13), text(12)]), ["pass", "fineweb.line_punct_ratio"]);
  });
  it("short_line_ratio: 66% of lines of at most 30 characters pass, 67% fail", async () => {
    const text = (short: number) => Array.from({ length: 100 }, (_, i) => (i < short ? `${word(8, i)} ${word(8, i + 500)}.` : long(i))).join("\n");
    assert.deepEqual(await judge("fineweb", ["short_line_thr", "short_line_length"], [text(66), text(67)]), ["pass", "fineweb.short_line_ratio"]);
  });
  it("char_dup_ratio: repeated lines' characters under 1% pass, 1% fails", async () => {
    // One 20-character line twice: 20 over the text's characters without newlines.
    const text = (total: number) => {
      const head = `${"r".repeat(20)}\n${"r".repeat(20)}\n`;
      const bodyChars = total - 40;
      return `${head}${"s".repeat(bodyChars)}`;
    };
    assert.deepEqual(await judge("fineweb", ["char_duplicates_ratio"], [text(2001), text(2000)]), ["pass", "fineweb.char_dup_ratio"]);
  });
  it("list_ratio: 0.3 newlines a word pass, more fail", async () => {
    // 10 words a line: n lines hold 10n words and n - 1 newlines.
    const text = (newlines: number, wordsInAll: number) => {
      const all = words(wordsInAll);
      const per = Math.ceil(wordsInAll / (newlines + 1));
      return Array.from({ length: newlines + 1 }, (_, i) => all.slice(i * per, (i + 1) * per).join(" ")).join("\n");
    };
    assert.deepEqual(await judge("fineweb", ["new_line_ratio"], [text(30, 100), text(31, 100)]), ["pass", "fineweb.list_ratio"]);
  });
});

describe("quality tables", () => {
  it("the addon's parameters, defaults and rules are quality-presets.ts's, in its order", () => {
    const table = loadAddon().qualityTable();
    assert.deepEqual(table.params, QUALITY_PARAMS.map((q) => ({ name: `${q.preset}.${q.name}`, default: q.default })));
    assert.deepEqual(table.rules, QUALITY_RULES.map(qualityReason));
  });
  it("the checked-in Unicode classes are this Node's (rerun scripts/gen-unicode-classes.mjs after a Node upgrade)", async (t) => {
    const header = readFileSync(join(repoRoot, "native", "src", "text", "unicode_classes.h"), "utf8");
    const version = /Unicode ([\d.]+)/.exec(header)?.[1];
    if (version !== process.versions.unicode) {
      t.skip(`the header is from Unicode ${version}, this Node has ${process.versions.unicode}`);
      return;
    }
    const { unicodeClassesHeader } = await import(join(repoRoot, "scripts", "gen-unicode-classes.mjs"));
    assert.equal(header, unicodeClassesHeader());
  });
});

describe("qualityFilter", () => {
  it("sets each failing row's reason, leaves the others, and skips sources whose filters are off", async () => {
    const db = await BuildDb.open(":memory:");
    await createIngestTables(db);
    const good = ["the", "and", ...words(60)].join(" ");
    const rows: [number, number, string][] = [
      [0, 0, good],
      [0, 1, "too short"],
      [1, 0, "too short"], // a source with filters: false
    ];
    for (const [s, r, text] of rows) await db.run(`INSERT INTO ${DOCUMENTS} VALUES (?, 0, ?, ?, NULL)`, [s, r, text]);
    const recipe = parseRecipe(
      `name: t\nfilters: { gopher_quality: { min_doc_words: 3 } }\nsources:\n  - {name: a, weight: 1, local: {files: [a.jsonl]}}\n  - {name: b, weight: 1, local: {files: [b.jsonl]}, filters: false}\n`,
      "t.yaml",
    );
    const result = await qualityFilter(db, recipe, 2);
    assert.deepEqual(result.checked, 2);
    const reasons = await db.rows<{ s: number; r: bigint; reason: string | null }>(`SELECT source_idx AS s, row_idx AS r, skip_reason AS reason FROM ${DOCUMENTS} ORDER BY s, r`);
    assert.deepEqual(reasons.map((x) => x.reason), [null, "gopher_quality.short_doc", null]);
    db.close();
  });
});
