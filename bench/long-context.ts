/**
 * Training at long context on this machine's CPU: tokens/s and peak RSS against context, for the tiny and small
 * presets, with and without --recompute, each configuration in its own process (so its peak RSS is its own).
 *   node --import tsx bench/long-context.ts [--models tiny,small] [--contexts 4096,16384,65536] [--whole-contexts …] [--threads N]
 * Each row is one micro-batch of one sequence: a forward + backward + AdamW step, the median of --steps after a
 * warm-up. Documents are --doc tokens long (EOS-separated; the document mask keeps attention within them), and a
 * second set of rows has one document the whole context (plain causal attention), so the cost of attention and the
 * blocks the kernels skip under the mask both show (--whole-contexts limits those rows: their cost is quadratic).
 * Predicted time per token scales the shortest context's by the
 * model's FLOPs per token there (6N + attention's 12·layers·hidden·mean keys attended), and the "no skip" column
 * what it would be if the kernels computed every causal block of the row and masked it afterwards; RSS is fitted to a + b·context
 * and each point's distance from the line printed. Prints a Markdown table; --json for the rows.
 */
import { spawnSync } from "node:child_process";
import { cpus } from "node:os";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { loadAddon, nativeModelConfig, type RunOptions } from "../src/native/addon.ts";
import { parameterCount, PRESETS } from "../src/train/model-config.ts";

const { values } = parseArgs({
  options: {
    models: { type: "string", default: "tiny,small" },
    contexts: { type: "string", default: "4096,16384,65536" },
    "whole-contexts": { type: "string" },
    doc: { type: "string", default: "4096" },
    steps: { type: "string", default: "2" },
    threads: { type: "string" },
    one: { type: "string" },
    json: { type: "boolean", default: false },
  },
});
const threads = Number(values.threads ?? cpus().length);
const steps = Number(values.steps);
const EOS = 100001;

interface Row {
  model: string;
  context: number;
  document: number;
  recompute: boolean;
  seconds_per_step: number;
  tokens_per_s: number;
  activation_bytes: number;
  peak_rss_bytes: number;
  flops_per_token: number;
  /** the FLOPs per token if no masked block were skipped (every key before the token attended) */
  flops_per_token_no_skip: number;
}

/** Mean keys a token attends to (itself included) when documents are `doc` long in a row of `context`. */
function meanKeys(context: number, doc: number): number {
  let pairs = 0;
  for (let start = 0; start < context; start += doc) {
    const n = Math.min(doc, context - start);
    pairs += (n * (n + 1)) / 2;
  }
  return pairs / context;
}

function flopsPerToken(model: string, context: number, doc: number): number {
  const c = PRESETS[model]!;
  return 6 * parameterCount(c) + 12 * c.nLayers * c.hidden * meanKeys(context, doc);
}

/** One configuration, in this process: model:context:document:recompute. */
async function measure(spec: string): Promise<Row> {
  const [model, contextText, docText, recomputeText] = spec.split(":");
  const context = Number(contextText), document = Number(docText), recompute = recomputeText === "1";
  const config = { ...PRESETS[model!]!, maxSeq: context };
  const m = new (loadAddon().Model)(nativeModelConfig(config), "cpu", threads);
  m.init(0);
  const tokens = Int32Array.from({ length: context }, (_, i) => ((i + 1) % document === 0 ? EOS : (i * 2654435761) % 100000));
  const opts: RunOptions = { precision: 1, docMask: 1, resetPositions: 1, maskEosLoss: 1, eosId: EOS, recompute: recompute ? 1 : 0 };
  const times: number[] = [];
  for (let s = 0; s <= steps; s++) {
    const start = performance.now();
    m.zeroGrad();
    await m.forwardBackward(tokens, 1, context, opts, 1 / context);
    await m.clipAdamwStep({ lr: 1e-4, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step: s + 1, decayEmbeddings: 0 }, 1);
    if (s > 0) times.push((performance.now() - start) / 1000);
  }
  const seconds = times.sort((a, b) => a - b)[Math.floor(times.length / 2)]!;
  const activation = m.memory().activations;
  m.dispose();
  return {
    model: model!,
    context,
    document,
    recompute,
    seconds_per_step: seconds,
    tokens_per_s: context / seconds,
    activation_bytes: activation,
    peak_rss_bytes: process.resourceUsage().maxRSS * 1024,
    flops_per_token: flopsPerToken(model!, context, document),
    flops_per_token_no_skip: flopsPerToken(model!, context, context),
  };
}

if (values.one) {
  process.stdout.write(JSON.stringify(await measure(values.one)) + "\n");
  process.exit(0);
}

const rows: Row[] = [];
// Rows grouped as they ran (a model's --doc documents without, then with recompute, then whole rows): each group
// has its own baseline and RSS line.
const groups = new Map<string, Row[]>();
const self = fileURLToPath(import.meta.url);
const contexts = values.contexts!.split(",").map(Number);
const wholeContexts = (values["whole-contexts"] ?? values.contexts!).split(",").map(Number);
for (const model of values.models!.split(",")) {
  for (const document of [Number(values.doc), 0]) {
    for (const recompute of [false, true]) {
      if (document === 0 && recompute) continue; // one long document: the attention skip, measured without recompute
      for (const context of document === 0 ? wholeContexts : contexts) {
        const doc = document === 0 ? context : Math.min(document, context);
        const r = spawnSync(process.execPath, ["--import", "tsx", self, "--one", `${model}:${context}:${doc}:${recompute ? 1 : 0}`, "--threads", String(threads), "--steps", String(steps)], { encoding: "utf8" });
        if (r.status !== 0) throw new Error(`${model} at ${context}: ${r.stderr}`);
        const row: Row = JSON.parse(r.stdout.trim().split("\n").pop()!);
        rows.push(row);
        const key = `${model} ${document} ${recompute}`;
        groups.set(key, [...(groups.get(key) ?? []), row]);
        process.stderr.write(`${model} ${context} doc ${doc}${recompute ? " recompute" : ""}: ${row.tokens_per_s.toFixed(0)} tok/s\n`);
      }
    }
  }
}

if (values.json) process.stdout.write(JSON.stringify(rows) + "\n");
const mib = (b: number) => (b / 2 ** 20).toFixed(0);
const lines = [
  "| model | context | document | recompute | tok/s | s/token measured | s/token predicted | s/token if no block were skipped | activations MiB | B/token | peak RSS MiB | RSS off the line |",
  "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
];
for (const group of groups.values()) {
  const base = group[0]!;
  // Least squares through (context, RSS).
  const n = group.length, mx = group.reduce((a, r) => a + r.context, 0) / n, my = group.reduce((a, r) => a + r.peak_rss_bytes, 0) / n;
  const b = group.reduce((a, r) => a + (r.context - mx) * (r.peak_rss_bytes - my), 0) / Math.max(1, group.reduce((a, r) => a + (r.context - mx) ** 2, 0));
  for (const r of group) {
    const measured = 1 / r.tokens_per_s;
    const predicted = (1 / base.tokens_per_s) * (r.flops_per_token / base.flops_per_token);
    const noSkip = (1 / base.tokens_per_s) * (r.flops_per_token_no_skip / base.flops_per_token);
    const fit = my + b * (r.context - mx);
    lines.push(
      `| ${r.model} | ${r.context.toLocaleString("en-US")} | ${r.document === r.context ? "whole row" : r.document.toLocaleString("en-US")} | ${r.recompute ? "yes" : "no"} | ${r.tokens_per_s.toFixed(0)} | ${(measured * 1e6).toFixed(1)} µs | ${(predicted * 1e6).toFixed(1)} µs | ${(noSkip * 1e6).toFixed(1)} µs | ${mib(r.activation_bytes)} | ${(r.activation_bytes / r.context).toFixed(0)} | ${mib(r.peak_rss_bytes)} | ${((100 * (r.peak_rss_bytes - fit)) / fit).toFixed(1)}% |`,
    );
  }
}
process.stdout.write(`CPU: ${cpus()[0]?.model ?? "?"}, ${threads} threads; fp32; ${steps} step(s) after a warm-up, median\n\n${lines.join("\n")}\n`);
