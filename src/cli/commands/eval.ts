/** `eval`: a checkpoint's loss on its run's held-out windows or on chosen sequences of a build. */
import { cpus } from "node:os";
import { resolve } from "node:path";
import type { Argv } from "yargs";
import { UsageError } from "../../util/errors.ts";
import { pickDevice } from "../device.ts";
import { spinnerFor } from "../render.ts";

function parseRange(text: string | undefined): [number, number | undefined] {
  if (!text) return [0, undefined];
  const m = text.match(/^(\d+)(?:\.\.(\d*))?$/);
  if (!m) throw new UsageError(`--sequences ${text}: expected A..B, A.. or A`);
  return [Number(m[1]), m[2] === undefined ? Number(m[1]) : m[2] === "" ? undefined : Number(m[2])];
}

export function registerEval(y: Argv): Argv {
  return y    .command(
      "eval",
      "mean loss and perplexity of a checkpoint: by default on its run's held-out windows",
      (c) =>
        c
          .option("checkpoint", { type: "string", demandOption: true, describe: "a checkpoint folder or a run folder (its latest)" })
          .option("data", { type: "string", describe: "a build's output folder (default: the data the run trained on)" })
          .option("sequences", { type: "string", describe: "score whole sequences A..B (inclusive), A.. or A instead of the held-out windows" })
          .option("all", { type: "boolean", default: false, describe: "score every sequence of the build, training data included" })
          .option("device", { choices: ["cpu", "cuda", "auto"], default: "auto", describe: "where to run (auto: the GPU when one is usable)" })
          .option("threads", { type: "number", default: cpus().length, describe: "CPU threads" })
          .option("json", { type: "boolean", default: false, describe: "one JSON object on stdout" }),
      async (a) => {
        if (a.all && a.sequences) throw new UsageError("--all and --sequences each choose what to score; give one");
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
          if (a.all || a.sequences) {
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
