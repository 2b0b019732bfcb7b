/**
 * `eval --tasks`: each task's rows from the Hub, its requests built and scored on the checkpoint's weights, its
 * metrics per subset and combined, and every request's log-likelihood (or completion and test outcome) kept as
 * samples so anyone can recompute the numbers.
 */
import type { HubClient } from "../hub/client.ts";
import type { NativeModel, RunOptions } from "../native/addon.ts";
import type { ProgressSink } from "../pipeline/progress.ts";
import type { TextTokenizer } from "../tokenizer/load.ts";
import { RuntimeFailure } from "../util/errors.ts";
import { executionConfinement, runProgram } from "./execute.ts";
import { encodePair, scoreRequests } from "./loglikelihood.ts";
import { combine, mcRowMetrics, meanWithStderr, type MetricValue } from "./metrics.ts";
import { loadTaskData, type TaskLock } from "../tasks/dataset.ts";
import type { LoadedTask } from "../tasks/load.ts";
import { fewshotPrefix, generationDocs, multipleChoiceDocs, type McDoc } from "../tasks/requests.ts";
import { pyStr } from "../tasks/template.ts";
import { generateUntil } from "./until.ts";

export interface ModelUnderTest {
  model: NativeModel;
  tokenizer: TextTokenizer;
  vocab: number;
  maxLength: number;
  eosId: number;
  bosId: number;
  run: RunOptions;
}

/** The run options benchmarks score with: plain causal attention over one text per row, as a Hugging Face model scores it. */
export function scoringRunOptions(precision: 0 | 1, eosId: number): RunOptions {
  return { precision, docMask: 0, resetPositions: 0, maskEosLoss: 0, eosId, recompute: 0 };
}

export interface BenchmarkOptions {
  /** Rows per subset at most (a quick look; the result says it is partial). */
  limit?: number;
  batchTokens: number;
  /** The lock entries to replay (--locked); a task missing from it is an error. */
  locked?: Map<string, TaskLock>;
  allowNetwork: boolean;
  python: string;
  /** Keep each request's token ids in the samples (for parity checks). */
  sampleIds: boolean;
}

export interface SubsetResult {
  name: string;
  rows: number;
  metrics: Record<string, MetricValue>;
}

export interface TaskResult {
  task: string;
  follows: string;
  file: string;
  task_sha256: string;
  output_type: string;
  num_fewshot: number;
  aggregate: string;
  limit: number | null;
  metrics: Record<string, MetricValue>;
  subsets: SubsetResult[];
  missing_subsets: string[];
  dataset: TaskLock;
  requests: number;
  tokens: number;
  seconds: number;
  /** generation tasks that run the model's code: how each program was confined, and its time limit */
  execution?: { confinement: string; timeout_s: number };
}

export type Sample = Record<string, unknown>;

function subsetLabel(task: LoadedTask, name: string, commit: string): string {
  return `${task.spec.dataset.repo}@${commit.slice(0, 12)}${name ? ` subset ${name}` : ""}`;
}

async function scoreMultipleChoice(
  m: ModelUnderTest,
  task: LoadedTask,
  docs: { subset: string; doc: McDoc }[],
  o: BenchmarkOptions,
  sink: ProgressSink,
  stage: `eval ${string}`,
): Promise<{ samples: Sample[]; perSubset: Map<string, Record<string, number[]>>; requests: number; tokens: number }> {
  const flat = docs.flatMap((d) => d.doc.requests.map((r) => ({ d, r })));
  const encoded = flat.map(({ r }) => encodePair(m.tokenizer, r.context, r.continuation, m.bosId));
  const scored = await scoreRequests(m.model, m.vocab, encoded, { maxLength: m.maxLength, batchTokens: o.batchTokens, run: m.run, padId: m.eosId }, (done, total) =>
    sink({ type: "stage_progress", stage, done, total, unit: "passes" }),
  );
  const perSubset = new Map<string, Record<string, number[]>>();
  const samples: Sample[] = [];
  let k = 0;
  for (const { subset, doc } of docs) {
    const mine = doc.requests.map(() => ({ s: scored[k]!, enc: encoded[k++]! }));
    const logprobs = mine.map((x) => x.s.logprob);
    const row = mcRowMetrics(logprobs, doc.choices, doc.gold);
    const bucket = perSubset.get(subset) ?? Object.fromEntries(task.spec.metrics.map((name) => [name, [] as number[]]));
    perSubset.set(subset, bucket);
    for (const name of task.spec.metrics) bucket[name]!.push(row[name as "acc" | "acc_norm"]);
    samples.push({
      subset,
      doc: doc.index,
      gold: doc.gold,
      choices: doc.choices,
      logprobs,
      greedy: mine.map((x) => x.s.greedy),
      continuations: doc.requests.map((r) => r.continuation),
      ...(task.spec.multiple_input ? { contexts_tail: doc.requests.map((r) => r.context.slice(-80)) } : { context_tail: doc.requests[0]!.context.slice(-80) }),
      ...(o.sampleIds ? { ids: mine.map((x) => ({ context: x.enc.context, continuation: x.enc.continuation })) } : {}),
      ...row,
    });
  }
  return { samples, perSubset, requests: flat.length, tokens: scored.reduce((a, s) => a + s.tokens, 0) };
}

async function runGeneration(
  m: ModelUnderTest,
  task: LoadedTask,
  docs: { subset: string; doc: ReturnType<typeof generationDocs>[number] }[],
  o: BenchmarkOptions,
  sink: ProgressSink,
  stage: `eval ${string}`,
): Promise<{ samples: Sample[]; perSubset: Map<string, Record<string, number[]>>; requests: number; tokens: number; execution: NonNullable<TaskResult["execution"]> }> {
  const spec = task.spec;
  const confinement = executionConfinement(o.allowNetwork, o.python);
  const samples: Sample[] = [];
  const perSubset = new Map<string, Record<string, number[]>>();
  let tokens = 0;
  for (const [i, { subset, doc }] of docs.entries()) {
    const gen = await generateUntil(m.model, m.tokenizer, doc.context, {
      until: spec.generation!.until,
      maxGen: spec.generation!.max_gen_toks,
      maxLength: m.maxLength,
      eosId: m.eosId,
      vocab: m.vocab,
      run: m.run,
    });
    tokens += gen.contextTokens + gen.tokens;
    const program = pyStr(task.templates.program!.render({ ...doc.row, completion: gen.text }));
    const outcome = await runProgram(program, spec.execution!.timeout_s, confinement, o.python);
    const bucket = perSubset.get(subset) ?? { "pass@1": [] };
    perSubset.set(subset, bucket);
    bucket["pass@1"]!.push(outcome.passed ? 1 : 0);
    samples.push({ subset, doc: doc.index, completion: gen.text, generated_tokens: gen.tokens, result: outcome.result, "pass@1": outcome.passed ? 1 : 0 });
    sink({ type: "stage_progress", stage, done: i + 1, total: docs.length, unit: "problems" });
  }
  return { samples, perSubset, requests: docs.length, tokens, execution: { confinement: confinement.description, timeout_s: spec.execution!.timeout_s } };
}

/** One task end to end; its samples in the order of the rows. */
export async function runTask(client: HubClient, m: ModelUnderTest, task: LoadedTask, o: BenchmarkOptions, sink: ProgressSink): Promise<{ result: TaskResult; samples: Sample[] }> {
  const spec = task.spec;
  const stage = `eval ${spec.task}` as const;
  const started = performance.now();
  sink({ type: "stage_start", stage });
  const locked = o.locked?.get(spec.task);
  if (o.locked && !locked) throw new RuntimeFailure(`--locked: the lock has no entry for task '${spec.task}'; run once without --locked to record it`);
  let files = 0;
  const data = await loadTaskData(client, task, locked, () => sink({ type: "stage_progress", stage, done: ++files, unit: "dataset files" }));
  if (data.missing.length) {
    sink({
      type: "note",
      stage,
      message: `${spec.task}: ${spec.dataset.repo}@${data.lock.commit.slice(0, 12)} holds ${data.subsets.length} of the task's ${data.subsets.length + data.missing.length} subsets; missing: ${data.missing.slice(0, 8).join(", ")}${data.missing.length > 8 ? ", …" : ""} (the score covers the subsets present; results.json lists the missing ones)`,
    });
  }
  const built = data.subsets.map((s) => {
    const where = subsetLabel(task, s.name, data.lock.commit);
    const prefix = fewshotPrefix(task, { subset: s.name, subset_label: s.label }, s.fewshot, where);
    const rows = o.limit !== undefined ? s.rows.slice(0, o.limit) : s.rows;
    return { subset: s.name, rows: rows.length, prefix, where, source: rows };
  });
  let execution: TaskResult["execution"];
  const generated = async () => {
    const g = await runGeneration(m, task, built.flatMap((b) => generationDocs(task, b.source, b.prefix, b.where).map((doc) => ({ subset: b.subset, doc }))), o, sink, stage);
    execution = g.execution;
    return g;
  };
  const { samples, perSubset, requests, tokens } =
    spec.output_type === "multiple_choice"
      ? await scoreMultipleChoice(m, task, built.flatMap((b) => multipleChoiceDocs(task, b.source, b.prefix, b.where).map((doc) => ({ subset: b.subset, doc }))), o, sink, stage)
      : await generated();
  const subsets: SubsetResult[] = built.map((b) => ({
    name: b.subset,
    rows: b.rows,
    metrics: Object.fromEntries(spec.metrics.map((name) => [name, meanWithStderr(perSubset.get(b.subset)?.[name] ?? [])])),
  }));
  const metrics = Object.fromEntries(spec.metrics.map((name) => [name, combine(subsets.map((s) => s.metrics[name]!), spec.aggregate)]));
  const seconds = (performance.now() - started) / 1000;
  sink({ type: "stage_end", stage, done: requests, unit: spec.output_type === "multiple_choice" ? "requests" : "problems", seconds });
  return {
    result: {
      task: spec.task,
      follows: spec.follows,
      file: task.file,
      task_sha256: task.sha256,
      output_type: spec.output_type,
      num_fewshot: spec.num_fewshot,
      aggregate: spec.aggregate,
      limit: o.limit ?? null,
      metrics,
      subsets: spec.subsets ? subsets : [],
      missing_subsets: data.missing,
      dataset: data.lock,
      requests,
      tokens,
      seconds,
      ...(execution ? { execution } : {}),
    },
    samples,
  };
}
