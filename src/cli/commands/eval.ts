/** `eval`: a checkpoint's loss on its run's held-out windows or on chosen sequences of a build. */
import { cpus } from "node:os";
import { resolve } from "node:path";
import type { Argv } from "yargs";
import { UsageError } from "../../util/errors.ts";
import { MAX_THREADS, wholeNumber } from "../numbers.ts";
import { pickDevice } from "../device.ts";
import { outputMode, progressRenderer, spinnerFor } from "../render.ts";
import { renderResultsTable } from "../results-table.ts";

function parseRange(text: string | undefined): [number, number | undefined] {
  if (!text) return [0, undefined];
  const m = text.match(/^(\d+)(?:\.\.(\d*))?$/);
  if (!m) throw new UsageError(`--sequences ${text}: expected A..B, A.. or A`);
  return [Number(m[1]), m[2] === undefined ? Number(m[1]) : m[2] === "" ? undefined : Number(m[2])];
}

interface TasksArgs {
  checkpoint: string;
  tasks: string;
  limit?: number;
  "batch-tokens": number;
  precision: "fp32" | "bf16";
  locked: boolean;
  output?: string;
  "allow-network": boolean;
  "log-ids": boolean;
  device: string;
  threads: number;
  json: boolean;
}

async function runTasksCommand(a: TasksArgs): Promise<void> {
  const [{ loadTasks }, { openCheckpoint }, { evaluateTasks }] = await Promise.all([
    import("../../tasks/load.ts"),
    import("../../eval/checkpoint.ts"),
    import("../../eval/evaluate-tasks.ts"),
  ]);
  // Task files are checked before the model is loaded: a typo costs nothing.
  const tasks = await loadTasks(a.tasks);
  const ckpt = await openCheckpoint(a.checkpoint, await pickDevice(a.device as "cpu" | "cuda" | "auto"), a.threads);
  const mode = outputMode(a.json);
  const r = await progressRenderer(mode);
  const onSigint = () => {
    r.stop(true);
    process.stderr.write("\ninterrupted: no results were written (results.json, if there is one, is from an earlier complete run)\n");
    process.exit(130);
  };
  process.once("SIGINT", onSigint);
  try {
    const { results, ran } = await evaluateTasks(
      ckpt,
      { tasks, limit: a.limit, batchTokens: a["batch-tokens"], precision: a.precision, locked: a.locked, outDir: a.output ? resolve(a.output) : undefined, allowNetwork: a["allow-network"], sampleIds: a["log-ids"] },
      r.sink,
    );
    r.stop();
    const where = resolve(a.output ?? ckpt.dir, "results.json");
    if (a.json) process.stdout.write(JSON.stringify({ type: "result", results_file: where, tasks: Object.fromEntries(ran.map((t) => [t.task, results.tasks[t.task]])) }) + "\n");
    else process.stdout.write(renderResultsTable(ran) + `\nresults: ${where}\n`);
  } catch (error) {
    r.stop(true);
    throw error;
  } finally {
    process.removeListener("SIGINT", onSigint);
    ckpt.model.dispose();
  }
}

interface NeedleArgs {
  checkpoint: string;
  lengths?: string;
  depths: string;
  haystack?: string;
  seed: number;
  output?: string;
  device: string;
  threads: number;
  json: boolean;
}

async function runNeedleCommand(a: NeedleArgs): Promise<void> {
  const [{ openCheckpoint }, { defaultLengths, parseDepths, parseLengths, runNeedle }] = await Promise.all([import("../../eval/checkpoint.ts"), import("../../eval/needle-run.ts")]);
  wholeNumber("seed", a.seed, 0, 2 ** 31 - 1, "the numbers' seed");
  const depths = parseDepths(a.depths);
  const ckpt = await openCheckpoint(a.checkpoint, await pickDevice(a.device as "cpu" | "cuda" | "auto"), a.threads);
  const spinner = (await spinnerFor(a.json))?.start("needle in a haystack");
  try {
    const haystack = a.haystack ?? ckpt.run.data;
    if (!haystack) throw new UsageError(`${ckpt.dir}: the checkpoint does not say what data it was trained on; pass --haystack BUILD|FILE`);
    const lengths = a.lengths ? parseLengths(a.lengths) : defaultLengths(ckpt.config.maxSeq);
    const r = await runNeedle(ckpt, { lengths, depths, seed: a.seed, haystack, outDir: resolve(a.output ?? ckpt.dir) }, (cell, done, total) => {
      if (spinner) spinner.text = `needle: ${done}/${total} (length ${cell.length}, depth ${cell.depth}: ${cell.correct ? "found" : "missed"})`;
    });
    spinner?.stop();
    const where = resolve(a.output ?? ckpt.dir);
    if (a.json) process.stdout.write(JSON.stringify({ type: "result", results_file: resolve(where, "needle.json"), accuracy: r.accuracy, by_length: r.by_length, cells: r.cells }) + "\n");
    else {
      const rows = r.lengths.map((l) => `  ${String(l).padStart(9)} ${(100 * r.by_length[String(l)]!).toFixed(1).padStart(6)}%  ${r.cells.filter((c) => c.length === l).map((c) => (c.correct ? "✓" : "·")).join("")}`);
      process.stdout.write(`${ckpt.dir}: needle found in ${(100 * r.accuracy).toFixed(1)}% of ${r.cells.length} cells (depths ${r.depths.join(", ")})\n    length  found  by depth\n${rows.join("\n")}\nresults: ${resolve(where, "needle.json")}, heatmap: ${resolve(where, "needle.svg")}\n`);
    }
  } catch (error) {
    spinner?.fail("needle failed");
    throw error;
  } finally {
    ckpt.model.dispose();
  }
}

export function registerEval(y: Argv): Argv {
  return y    .command(
      "eval",
      "a checkpoint's benchmarks (--tasks cmmlu,ceval,arc_easy,…) or its mean loss and perplexity (by default on its run's held-out windows)",
      (c) =>
        c
          .option("checkpoint", { type: "string", demandOption: true, describe: "a checkpoint folder or a run folder (its latest)" })
          .option("data", { type: "string", describe: "a build's output folder (default: the data the run trained on)" })
          .option("sequences", { type: "string", describe: "score whole sequences A..B (inclusive), A.. or A instead of the held-out windows" })
          .option("all", { type: "boolean", default: false, describe: "score every sequence of the build, training data included" })
          .option("by-position", { type: "boolean", default: false, describe: "the loss by position in the document, in buckets of --bucket tokens (a table, and an SVG curve: --plot)" })
          .option("bucket", { type: "number", default: 1024, describe: "with --by-position: positions per bucket" })
          .option("plot", { type: "string", describe: "with --by-position: where the SVG goes (default: loss-by-position.svg in the checkpoint folder)" })
          .option("needle", { type: "boolean", default: false, describe: "needle in a haystack: a 7-digit number at each --depths of a haystack cut to each --lengths, answered greedily; needle.json and a heatmap (needle.svg) in the checkpoint folder (or --output)" })
          .option("lengths", { type: "string", describe: "with --needle: prompt lengths in tokens, e.g. 1K,2K,4K (default: 1K doubling while they fit the model)" })
          .option("depths", { type: "string", default: "0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1", describe: "with --needle: where the needle goes, 0 (start) to 1 (end)" })
          .option("haystack", { type: "string", describe: "with --needle: a build's folder (its documents, EOS as a blank line) or a text file (default: the run's data)" })
          .option("seed", { type: "number", default: 0, describe: "with --needle: seeds each cell's number" })
          .option("tasks", { type: "string", describe: "benchmarks, comma-separated: shipped names (tasks/*.yaml) or paths to task YAML files" })
          .option("limit", { type: "number", describe: "with --tasks: score at most N rows per task (or per subject): a quick look, marked partial" })
          .option("batch-tokens", { type: "number", default: 4096, describe: "with --tasks: tokens per forward pass (rows × padded length)" })
          .option("precision", { choices: ["fp32", "bf16"], default: "fp32", describe: "with --tasks: arithmetic of the forward pass" })
          .option("locked", { type: "boolean", default: false, describe: "with --tasks: read exactly the dataset commits and files recorded in eval.lock.json" })
          .option("output", { type: "string", describe: "with --tasks: folder for results.json, eval/ and eval.lock.json; with --needle: for needle.json and needle.svg (default: the checkpoint folder)" })
          .option("allow-network", { type: "boolean", default: false, describe: "with humaneval: run generated code even where it cannot be cut off from the network" })
          .option("log-ids", { type: "boolean", default: false, describe: "with --tasks: keep every request's token ids in the samples" })
          .option("device", { choices: ["cpu", "cuda", "auto"], default: "auto", describe: "where to run (auto: the GPU when one is usable)" })
          .option("threads", { type: "number", default: cpus().length, describe: "CPU threads" })
          .option("json", { type: "boolean", default: false, describe: "one JSON object on stdout" }),
      async (a) => {
        wholeNumber("threads", a.threads, 1, MAX_THREADS, "CPU threads");
        if (a.all && a.sequences) throw new UsageError("--all and --sequences each choose what to score; give one");
        if (a.tasks !== undefined) {
          if (a.all || a.sequences || a.data || a["by-position"]) throw new UsageError("--tasks runs benchmarks; --all, --sequences, --data and --by-position are for the loss: give one or the other");
          wholeNumber("limit", a.limit, 1, 1_000_000_000, "rows per task or subject");
          wholeNumber("batch-tokens", a["batch-tokens"], 1, 1 << 24, "tokens in one forward pass");
          return runTasksCommand(a as TasksArgs);
        }
        if (a.needle) {
          if (a.tasks !== undefined || a["by-position"] || a.all || a.sequences) throw new UsageError("--needle is its own evaluation; leave out --tasks, --by-position, --all and --sequences");
          return runNeedleCommand(a as unknown as NeedleArgs);
        }
        if (a.lengths !== undefined || a.haystack !== undefined) throw new UsageError("--lengths and --haystack go with --needle");
        if (a["by-position"]) wholeNumber("bucket", a.bucket, 1, 1 << 21, "positions per bucket");
        else if (a.plot !== undefined || process.argv.includes("--bucket")) throw new UsageError("--bucket and --plot go with --by-position");
        const [{ openCheckpoint }, { evalHeldOut, evalSequences }] = await Promise.all([import("../../eval/checkpoint.ts"), import("../../eval/loss.ts")]);
        const ckpt = await openCheckpoint(a.checkpoint, await pickDevice(a.device), a.threads);
        const spinner = (await spinnerFor(a.json))?.start("evaluating");
        const started = performance.now();
        const progress = (done: number, total: number) => {
          if (!spinner) return;
          const seconds = (performance.now() - started) / 1000;
          spinner.text = `evaluating: ${done}/${total} ETA ${Math.round((seconds * (total - done)) / done)}s`;
        };
        try {
          const data = a.data ? resolve(a.data) : ckpt.run.data;
          if (!data) throw new UsageError(`${ckpt.dir}: the checkpoint does not say what data it was trained on; pass --data`);
          if (a["by-position"]) {
            const [{ evalByPosition }, { positionLossSvg }, { writeFileAtomic }, { join }] = await Promise.all([
              import("../../eval/by-position.ts"),
              import("../../train/plot.ts"),
              import("../../util/atomic.ts"),
              import("node:path"),
            ]);
            const r = await evalByPosition(ckpt, data, { bucket: a.bucket, ...(a.all || a.sequences ? { range: parseRange(a.sequences) } : {}) }, progress);
            spinner?.stop();
            const plot = resolve(a.plot ?? join(ckpt.dir, "loss-by-position.svg"));
            const scored = a.all || a.sequences ? "sequences" : "held_out";
            await writeFileAtomic(plot, positionLossSvg(r.buckets, `loss by position: ${ckpt.dir.split("/").slice(-2).join("/")} (${scored === "held_out" ? "held-out windows" : "sequences"})`));
            if (a.json) process.stdout.write(JSON.stringify({ checkpoint: ckpt.dir, data, split: scored, bucket: a.bucket, tokens: r.tokens, windows: r.windows, context: r.context, buckets: r.buckets, plot }) + "\n");
            else {
              const rows = r.buckets.map((b) => `  ${`${b.from.toLocaleString("en-US")}–${b.to.toLocaleString("en-US")}`.padEnd(18)} ${b.loss.toFixed(4).padStart(9)} ${b.perplexity.toFixed(2).padStart(11)} ${b.tokens.toLocaleString("en-US").padStart(12)}`);
              process.stdout.write(`${ckpt.dir}: loss by position in the document over ${r.windows} window(s) of ${r.context} tokens\n  ${"positions".padEnd(18)} ${"loss".padStart(9)} ${"perplexity".padStart(11)} ${"tokens".padStart(12)}\n${rows.join("\n")}\nplot: ${plot}\n`);
            }
          } else if (a.all || a.sequences) {
            const [first, last] = parseRange(a.sequences);
            const r = await evalSequences(ckpt, data, first, last, progress);
            spinner?.stop();
            if (a.json) process.stdout.write(JSON.stringify({ checkpoint: ckpt.dir, data, split: "sequences", mean_loss: r.mean, perplexity: r.perplexity, tokens: r.tokens, sequences: r.sequences }) + "\n");
            else process.stdout.write(`${ckpt.dir}: mean loss ${r.mean.toFixed(4)}, perplexity ${r.perplexity.toFixed(3)} over ${r.sequences.length} sequence(s), ${r.tokens} predicted tokens\n`);
          } else {
            const r = await evalHeldOut(ckpt, data, progress);
            spinner?.stop();
            if (a.json) process.stdout.write(JSON.stringify({ checkpoint: ckpt.dir, data, split: "held_out", mean_loss: r.mean, perplexity: r.perplexity, tokens: r.tokens, windows: r.windows, context: r.context }) + "\n");
            else process.stdout.write(`${ckpt.dir}: mean loss ${r.mean.toFixed(4)}, perplexity ${r.perplexity.toFixed(3)} over the run's ${r.windows} held-out window(s) of ${r.context} tokens, ${r.tokens} predicted tokens\n`);
          }
        } catch (error) {
          spinner?.fail("evaluation failed");
          throw error;
        } finally {
          ckpt.model.dispose();
        }
      },
    );
}
