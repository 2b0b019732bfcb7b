/** The task templates: the Jinja subset lm-evaluation-harness's YAML uses, with Python's string semantics. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { compileTemplate, MissingColumn, TemplateError } from "../../src/tasks/template.ts";

const render = (src: string, row: Record<string, unknown>) => compileTemplate(src).render(row as never);

describe("task templates", () => {
  it("renders columns, methods and Python's strip", () => {
    assert.equal(render("{{Question.strip()}}\nA. {{A}}\n答案：", { Question: " \u3000问题\t\n", A: "甲" }), "问题\nA. 甲\n答案：");
    assert.equal(render("{{ x.lstrip() }}|{{ x.rstrip() }}", { x: "  a  " }), "a  |  a");
  });

  it("yields the value itself when the template is one expression (a list, an index)", () => {
    assert.deepEqual(render("{{choices.text}}", { choices: { text: ["a", "b"], label: ["A", "B"] } }), ["a", "b"]);
    assert.equal(render("{{choices.label.index(answerKey)}}", { choices: { label: ["A", "B", "C"] }, answerKey: "C" }), 2);
    assert.deepEqual(render("{{[sol1, sol2]}}", { sol1: "x", sol2: "y" }), ["x", "y"]);
    assert.equal(render("{{ ['A', 'B', 'C', 'D'].index(Answer) }}", { Answer: "D" }), 3);
  });

  it("slices and indexes by code point, as Python does", () => {
    const row = { sentence: "Ann gave 李 the _ because it fit.", option1: "hat", option2: "coat" };
    assert.deepEqual(render("{{ [sentence[:sentence.index('_')] + option1, sentence[:sentence.index('_')] + option2] }}", row), ["Ann gave 李 the hat", "Ann gave 李 the coat"]);
    assert.equal(render("{{ sentence[sentence.index('_') + 1:].strip() }}", row), "because it fit.");
    assert.equal(render("{{ s[-2:] }}", { s: "汉字ab" }), "ab");
  });

  it("filters: trim, replace, regex_replace, capitalize (Python's: the rest lower case), map, int", () => {
    assert.equal(render("{{ t | trim | replace(' [title]', '. ') | regex_replace('\\\\[.*?\\\\]', '') | replace('  ', ' ') }}", { t: " How to cook [title] Boil  [step] water " }), "How to cook. Boil  water"); // as Python: one pass of replace('  ', ' ') leaves two of three spaces
    assert.equal(render("{{ x.capitalize() }}", { x: "hELLO World" }), "Hello world");
    assert.deepEqual(render("{{ e | map('trim') | map('upper') }}", { e: [" a", "b "] }), ["A", "B"]);
    assert.equal(render("{{ label | int }}", { label: "2" }), 2);
  });

  it("names the missing column, and refuses what it does not know", () => {
    assert.throws(() => render("{{ nope }}", { a: 1 }), (e: unknown) => e instanceof MissingColumn && e.column === "nope");
    assert.throws(() => compileTemplate("{{ a | nofilter }}").render({ a: "x" }), /unknown filter 'nofilter'/);
    assert.throws(() => compileTemplate("{% if a %}x{% endif %}"), TemplateError);
    assert.throws(() => compileTemplate("{{ a "), /without '}}'/);
    assert.throws(() => render("{{ a.__class__ }}", { a: "x" }), /no field '__class__'/);
    assert.deepEqual(compileTemplate("{{A}} {{ choices.text }} {{ x[y] }}").columns.sort(), ["A", "choices", "x", "y"]);
  });
});
