/**
 * From rows to what the model is asked, as lm-evaluation-harness builds it: derived columns first, then
 * description + few-shot examples (each `text + target_delimiter + target`, joined by fewshot_delimiter) + the
 * row's text; for multiple choice one (context, target_delimiter + choice) pair per choice, or for
 * multiple_input one (description + examples + choice, target_delimiter + target) pair per choice.
 */
import { RuntimeFailure } from "../util/errors.ts";
import type { Row } from "./dataset.ts";
import type { LoadedTask } from "./load.ts";
import { MissingColumn, pyStr, TemplateError, type Template, type Value } from "./template.ts";

export interface ChoiceRequest {
  context: string;
  continuation: string;
}

export interface McDoc {
  /** Row index within its subset's evaluation split. */
  index: number;
  gold: number;
  choices: string[];
  requests: ChoiceRequest[];
}

export interface GenDoc {
  index: number;
  context: string;
  row: Row;
}

function render(task: LoadedTask, t: Template, row: Row, field: string, where: string): Value {
  try {
    return t.render(row);
  } catch (error) {
    if (error instanceof MissingColumn) {
      throw new RuntimeFailure(`${task.file}: ${field} reads column '${error.column}', which ${where} does not have (columns: ${Object.keys(row).join(", ")}); fix the task file`);
    }
    if (error instanceof TemplateError) throw new RuntimeFailure(`${task.file}: ${field} failed on ${where}: ${error.message}`);
    throw error;
  }
}

/** The row with the task's derived columns added in order (the harness's process_docs). */
export function derive(task: LoadedTask, row: Row, where: string): Row {
  let out = row;
  for (const [name, t] of task.templates.derive) out = { ...out, [name]: render(task, t, out, `derive.${name}`, where) };
  return out;
}

function choicesOf(task: LoadedTask, row: Row, where: string): string[] {
  const spec = task.spec.doc_to_choice;
  const value = Array.isArray(spec) ? spec : render(task, task.templates.choice!, row, "doc_to_choice", where);
  if (!Array.isArray(value) || value.length === 0) throw new RuntimeFailure(`${task.file}: doc_to_choice gave ${JSON.stringify(value)?.slice(0, 60)} on ${where}, not a list of choices`);
  return value.map((v) => pyStr(v));
}

/** The target as a choice index (an int, a digit string, or one of the choices), as the harness reads it. */
function goldOf(task: LoadedTask, value: Value, choices: string[], where: string): number {
  let gold: number | undefined;
  if (typeof value === "number") gold = value;
  else if (typeof value === "boolean") gold = value ? 1 : 0;
  else if (typeof value === "string" && /^\d+$/.test(value.trim())) gold = Number(value.trim());
  else if (typeof value === "string" && choices.includes(value)) gold = choices.indexOf(value);
  if (gold === undefined || !Number.isInteger(gold) || gold < 0 || gold >= choices.length) {
    throw new RuntimeFailure(`${task.file}: the target of ${where} is ${JSON.stringify(value)?.slice(0, 60)}, not one of its ${choices.length} choices; a row cannot be scored without its answer`);
  }
  return gold;
}

function targetValue(task: LoadedTask, row: Row, where: string): Value {
  return typeof task.spec.doc_to_target === "number" ? task.spec.doc_to_target : render(task, task.templates.target!, row, "doc_to_target", where);
}

/** The few-shot prefix: description plus the first n examples of the few-shot split, each ending in the delimiter. */
export function fewshotPrefix(task: LoadedTask, vars: Row, shots: Row[], subsetWhere: string): string {
  const spec = task.spec;
  const description = pyStr(render(task, task.templates.description, vars, "description", subsetWhere));
  if (spec.num_fewshot === 0) return description;
  if (shots.length < spec.num_fewshot) {
    throw new RuntimeFailure(`${task.file}: ${subsetWhere} has ${shots.length} few-shot row(s) in '${spec.dataset.fewshot_split}', the task asks for ${spec.num_fewshot}`);
  }
  const examples = shots.slice(0, spec.num_fewshot).map((raw, i) => {
    const where = `few-shot row ${i} of ${subsetWhere}`;
    const row = derive(task, raw, where);
    if (spec.output_type === "generate_until") return pyStr(render(task, task.templates.text, row, "doc_to_text", where)) + spec.target_delimiter + pyStr(targetValue(task, row, where));
    const choices = choicesOf(task, row, where);
    if (spec.multiple_input) {
      const gold = goldOf(task, render(task, task.templates.text, row, "doc_to_text", where), choices, where);
      return choices[gold]! + spec.target_delimiter + pyStr(targetValue(task, row, where));
    }
    const target = targetValue(task, row, where);
    const text = typeof target === "string" && !/^\d+$/.test(target.trim()) && !choices.includes(target) ? target : choices[goldOf(task, target, choices, where)]!;
    return pyStr(render(task, task.templates.text, row, "doc_to_text", where)) + spec.target_delimiter + text;
  });
  return description + examples.join(spec.fewshot_delimiter) + spec.fewshot_delimiter;
}

export function multipleChoiceDocs(task: LoadedTask, rows: Row[], prefix: string, subsetWhere: string): McDoc[] {
  const spec = task.spec;
  return rows.map((raw, index) => {
    const where = `row ${index} of ${subsetWhere}`;
    const row = derive(task, raw, where);
    const choices = choicesOf(task, row, where);
    if (spec.multiple_input) {
      const gold = goldOf(task, render(task, task.templates.text, row, "doc_to_text", where), choices, where);
      const continuation = spec.target_delimiter + pyStr(targetValue(task, row, where));
      return { index, gold, choices, requests: choices.map((c) => ({ context: prefix + c, continuation })) };
    }
    const gold = goldOf(task, targetValue(task, row, where), choices, where);
    const context = prefix + pyStr(render(task, task.templates.text, row, "doc_to_text", where));
    return { index, gold, choices, requests: choices.map((c) => ({ context, continuation: spec.target_delimiter + c })) };
  });
}

export function generationDocs(task: LoadedTask, rows: Row[], prefix: string, subsetWhere: string): GenDoc[] {
  return rows.map((raw, index) => {
    const where = `row ${index} of ${subsetWhere}`;
    const row = derive(task, raw, where);
    return { index, row, context: prefix + pyStr(render(task, task.templates.text, row, "doc_to_text", where)) };
  });
}

/**
 * The text of each evaluation row as a model would meet it, for decontamination: the prompt with every choice
 * (multiple choice; the choices with the shared continuation for multiple_input), or the prompt and the reference
 * (generation). No description or few-shot examples: those are the few-shot split's, not the evaluated rows.
 */
export function evaluationTexts(task: LoadedTask, rows: Row[], subsetWhere: string): string[] {
  const spec = task.spec;
  return rows.map((raw, index) => {
    const where = `row ${index} of ${subsetWhere}`;
    const row = derive(task, raw, where);
    if (spec.output_type === "generate_until") return `${pyStr(render(task, task.templates.text, row, "doc_to_text", where))}\n${pyStr(targetValue(task, row, where))}`;
    const choices = choicesOf(task, row, where);
    if (spec.multiple_input) return [...choices, pyStr(targetValue(task, row, where))].join(" ");
    return [pyStr(render(task, task.templates.text, row, "doc_to_text", where)), ...choices].join(" ");
  });
}
