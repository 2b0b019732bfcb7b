/**
 * Prompts as lm-evaluation-harness builds them, for the shipped tasks that have no stand-in dataset here
 * (HellaSwag, WinoGrande, SciQ: rows written below) and for the few-shot layout of CMMLU.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { loadTask, loadTasks, shippedTaskNames } from "../../src/tasks/load.ts";
import { fewshotPrefix, multipleChoiceDocs } from "../../src/tasks/requests.ts";
import { parseTask } from "../../src/tasks/load.ts";

describe("task requests", () => {
  it("hellaswag: the harness's preprocess of query and endings", async () => {
    const task = await loadTask("hellaswag");
    const row = {
      activity_label: "Removing ice from car",
      ctx_a: "Then, the man writes over the snow covering the window of a car, and a woman wearing winter clothes smiles.",
      ctx_b: "then",
      endings: [", the man adds wax to the windshield and cuts it.", ", a person board a ski lift, while two men supporting the head of the person wearing winter clothes snow as the we girls sled.", ", the man puts on a christmas coat, knitted with netting.", ", the man continues removing the snow on his car."],
      label: "3",
    };
    const [doc] = multipleChoiceDocs(task, [row], fewshotPrefix(task, {}, [], "test"), "test rows");
    assert.equal(doc!.gold, 3);
    assert.equal(doc!.requests[0]!.context, "Removing ice from car: Then, the man writes over the snow covering the window of a car, and a woman wearing winter clothes smiles. Then");
    assert.equal(doc!.requests[3]!.continuation, " , the man continues removing the snow on his car.");
    const wiki = { activity_label: "Home and Garden", ctx_a: "[header] How to grow tomatoes [title] Pick a spot.", ctx_b: "", endings: [" [step] Dig a hole.", "b", "c", "d"], label: "0" };
    const [w] = multipleChoiceDocs(task, [wiki], "", "test rows");
    assert.equal(w!.requests[0]!.context, "Home and Garden: How to grow tomatoes. Pick a spot.");
    assert.equal(w!.choices[0], " Dig a hole."); // strip comes before the bracket removal, as in utils.preprocess
  });

  it("winogrande: each option completes the sentence up to the blank; the rest is the shared continuation", async () => {
    const task = await loadTask("winogrande");
    const row = { sentence: "Sarah was a much better surgeon than Maria so _ always got the harder cases.", option1: "Sarah", option2: "Maria", answer: "1" };
    const [doc] = multipleChoiceDocs(task, [row], "", "test rows");
    assert.equal(doc!.gold, 0);
    assert.deepEqual(
      doc!.requests.map((r) => [r.context, r.continuation]),
      [
        ["Sarah was a much better surgeon than Maria so Sarah", " always got the harder cases."],
        ["Sarah was a much better surgeon than Maria so Maria", " always got the harder cases."],
      ],
    );
  });

  it("sciq: support, question, the correct answer as the fourth choice", async () => {
    const task = await loadTask("sciq");
    const row = { question: "What type of organism is commonly used in preparation of foods such as cheese and yogurt?", distractor1: "viruses", distractor2: "protozoa", distractor3: "gymnosperms", correct_answer: "mesophilic organisms", support: " Mesophiles grow best in moderate temperature." };
    const [doc] = multipleChoiceDocs(task, [row], "", "test rows");
    assert.equal(doc!.gold, 3);
    assert.equal(doc!.requests[0]!.context, "Mesophiles grow best in moderate temperature.\nQuestion: What type of organism is commonly used in preparation of foods such as cheese and yogurt?\nAnswer:");
    assert.deepEqual(doc!.choices, ["viruses", "protozoa", "gymnosperms", "mesophilic organisms"]);
  });

  it("cmmlu: description, then five solved dev questions, then the question", async () => {
    const task = await loadTask("cmmlu");
    const q = (i: number, answer: string) => ({ Question: `问题${i} `, A: "甲", B: "乙", C: "丙", D: "丁", Answer: answer });
    const prefix = fewshotPrefix(task, { subset: "agronomy", subset_label: "农学" }, [1, 2, 3, 4, 5].map((i) => q(i, "ABCDA"[i - 1]!)), "agronomy");
    const [doc] = multipleChoiceDocs(task, [q(9, "C")], prefix, "agronomy");
    const shot = (i: number, a: string) => `问题${i}\nA. 甲\nB. 乙\nC. 丙\nD. 丁\n答案： ${a}`;
    assert.equal(
      doc!.requests[0]!.context,
      `以下是关于农学的单项选择题，请直接给出正确答案的选项。\n\n${[shot(1, "A"), shot(2, "B"), shot(3, "C"), shot(4, "D"), shot(5, "A")].join("\n\n")}\n\n问题9\nA. 甲\nB. 乙\nC. 丙\nD. 丁\n答案：`,
    );
    assert.deepEqual(doc!.requests.map((r) => r.continuation), [" A", " B", " C", " D"]);
    assert.equal(doc!.gold, 2);
  });

  it("every shipped task file parses and names what it follows", async () => {
    const names = await shippedTaskNames();
    for (const want of ["cmmlu", "ceval", "hellaswag", "arc_easy", "arc_challenge", "piqa", "winogrande", "boolq", "openbookqa", "sciq", "humaneval"]) assert.ok(names.includes(want), want);
    for (const t of await loadTasks(names.join(","))) assert.match(t.spec.follows, /lm-evaluation-harness/);
  });

  it("a bad task file is refused with its line; an unknown name with a suggestion", async () => {
    assert.throws(
      () => parseTask("task: x\nfollows: me\ndataset: {repo: a/b, config: c, split: test}\ndoc_to_text: '{{q'\ndoc_to_choice: [a, b]\ndoc_to_target: 0\nmetrics: [acc]\n", "my.yaml"),
      (e: Error) => /my\.yaml:4:\d+: doc_to_text: '\{\{' without '\}\}'/.test(e.message),
    );
    assert.throws(() => parseTask("task: x\nfollows: me\ndataset: {repo: a/b, config: c, split: test}\ndoc_to_text: q\ndoc_to_target: 0\nmetrics: [acc]\n", "my.yaml"), /my\.yaml:1:1: doc_to_choice: a multiple_choice task needs doc_to_choice/);
    assert.throws(() => parseTask("task: x\nfollows: me\ndatset: {}\n", "my.yaml"), /unknown key 'datset' — did you mean 'dataset'/);
    await assert.rejects(loadTask("arc_eazy"), /unknown task 'arc_eazy' — did you mean 'arc_easy'/);
  });
});
