import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { cpus } from "node:os";
import { resolve } from "node:path";
import type { Argv, Options } from "yargs";
import type { FlagSpec, parseTrainConfig as ParseTrainConfig } from "../../train/options.ts";
import type { TrainEvent } from "../../train/trainer.ts";
import { Interrupted, UsageError } from "../../util/errors.ts";
import { outputMode } from "../render.ts";

// The train flags come from the option declarations (train/options.ts, zod): loaded only when the command is
// `train` (prepareTrainCommand, called by main before parsing), so other commands and --help start without zod.
let trainFlags: FlagSpec[] | undefined;
let parseTrainConfig: typeof ParseTrainConfig;

export async function prepareTrainCommand(): Promise<void> {
  const options = await import("../../train/options.ts");
  trainFlags = options.trainFlags();
  parseTrainConfig = options.parseTrainConfig;
}

function trainFlagOptions(): Record<string, Options> {
  return Object.fromEntries(
    (trainFlags ?? []).map((f) => [
      f.flag,
      { type: f.type, describe: f.describe, ...(f.choices ? { choices: f.choices } : {}), ...(f.default !== undefined ? { default: f.default } : {}), ...(f.key === "data" ? { demandOption: true } : {}) },
    ]),
  );
}

// Loaded when a command runs, not when the CLI starts (--help stays fast).
const addon = async () => (await import("../../native/addon.ts")).loadAddon();
const infer = () => import("../../train/infer.ts");
const spinnerFor = async (json: boolean) => (outputMode(json) === "tty" ? (await import("ora")).default({ stream: process.stderr }) : undefined);

async function device(requested: string): Promise<"cpu" | "cuda"> {
  if (requested === "cpu" || requested === "cuda") return requested;
  // auto: the GPU when the addon has CUDA and a device answers; else the CPU.
  const native = await addon();
  if (!native.cudaCompiled) return "cpu";
  try {
    new native.Model({ nLayers: 1, hidden: 2, nHeads: 1, ffn: 1, vocab: 2, maxSeq: 1, ropeTheta: 10000, normEps: 1e-5 }, "cuda", 1).dispose();
    return "cuda";
  } catch (e) {
    // No GPU is the normal case; a GPU the backend cannot use (no cuBLASLt, say) is worth a word.
    const why = (e as Error).message;
    if (!/no usable CUDA driver or device|no CUDA device is visible/.test(why)) process.stderr.write(`note: --device auto uses the CPU: ${why}\n`);
    return "cpu";
  }
}

function parseRange(text: string | undefined): [number, number | undefined] {
  if (!text) return [0, undefined];
  const m = text.match(/^(\d+)(?:\.\.(\d*))?$/);
  if (!m) throw new UsageError(`--sequences ${text}: expected A..B, A.. or A`);
  return [Number(m[1]), m[2] === undefined ? Number(m[1]) : m[2] === "" ? undefined : Number(m[2])];
}

export function registerTrain(y: Argv): Argv {
  return y
    .command(
      "train",
      "train a LLaMA-2-style model on a build's shards through the native addon",
      (c) =>
        c
          .options(trainFlagOptions())
          .option("device", { choices: ["cpu", "cuda", "auto"], default: "auto", describe: "where to train (auto: the GPU when one is usable, else the CPU)" })
          .option("resume", { type: "boolean", default: false, describe: "continue the run in --out from its last checkpoint, bit for bit" })
          .option("json", { type: "boolean", default: false, describe: "NDJSON events on stdout" })
          .config("config", "a YAML (or JSON) run config whose keys are these flags, e.g. `lr: 3e-4`; flags given on the command line win", (path: string) => {
            try {
              return createRequire(import.meta.url)("yaml").parse(readFileSync(path, "utf8")) ?? {};
            } catch (error) {
              throw new UsageError(`--config ${path}: ${(error as Error).message}`);
            }
          }),
      async (a) => {
        const { resolveModelConfig } = await import("../../train/model-config.ts");
        const { train } = await import("../../train/trainer.ts");
        const { name, config: modelConfig } = await resolveModelConfig(a.model as string);
        const raw: Record<string, unknown> = Object.fromEntries(trainFlags!.map((f) => [f.key, a[f.flag] ?? null]));
        Object.assign(raw, { data: resolve(a.data as string), out: resolve(a.out as string), model: name, model_config: modelConfig, device: await device(a.device as string) });
        const parsed = parseTrainConfig(raw);
        if (!parsed.ok) throw new UsageError(parsed.problems.join("; "));
        const config = parsed.config;
        const mode = outputMode(a.json);
        const spinner = (await spinnerFor(a.json))?.start("starting");
        let stop = false;
        const onSigint = () => {
          stop = true;
          process.stderr.write("\nstopping after this step (Ctrl-C again to abort)\n");
          process.once("SIGINT", () => process.exit(130));
        };
        process.once("SIGINT", onSigint);
        const onEvent = (e: TrainEvent) => {
          if (mode === "json") return void process.stdout.write(JSON.stringify({ ...e, time: new Date().toISOString() }) + "\n");
          let line: string | undefined;
          if (e.type === "start") line = `${e.resumed_from ? `resuming from ${e.resumed_from}` : "training"} on ${e.backend}: ${e.parameters.toLocaleString("en-US")} parameters, ${e.tokens_per_step} tokens/step`;
          if (e.type === "step") {
            const text = `step ${e.step}/${config.steps} loss ${e.loss.toFixed(4)} lr ${e.lr.toExponential(2)} |g| ${e.grad_norm.toFixed(3)} ${Math.round(e.tokens_per_s).toLocaleString("en-US")} tok/s ETA ${Math.round(e.eta_s)}s`;
            if (spinner) spinner.text = text;
            else if (e.step % 10 === 0 || e.step === config.steps) line = text;
          }
          if (e.type === "eval") line = `eval at step ${e.step}: loss ${e.eval_loss.toFixed(4)}, perplexity ${e.perplexity.toFixed(2)}`;
          if (e.type === "checkpoint") line = `saved ${e.path}`;
          if (e.type === "note") line = e.message;
          if (e.type === "memory") {
            const gb = (bytes: number) => `${(bytes / 2 ** 30).toFixed(2)} GiB`;
            line = `memory on ${config.device}: ${gb(e.states_bytes)} weights, gradients and AdamW state + ${gb(e.activation_bytes)} activations at micro-batch ${e.micro_batch} × ${e.context}${e.recompute ? " (recomputed)" : ""}`;
          }
          if (e.type === "done") line = `done at step ${e.step}: ${e.out} (metrics.jsonl, loss.svg)`;
          if (line) {
            if (spinner) spinner.info(line).start();
            else process.stderr.write(line + "\n");
          }
        };
        let lastCheckpoint: string | undefined;
        let lastStep = 0;
        try {
          await train(config, {
            resume: a.resume as boolean,
            onEvent: (e) => {
              if (e.type === "checkpoint") lastCheckpoint = e.path;
              if (e.type === "step") lastStep = e.step;
              onEvent(e);
            },
            shouldStop: () => stop,
          });
          spinner?.stop();
          if (stop && lastStep < config.steps) {
            throw new Interrupted(
              `interrupted at step ${lastStep} of ${config.steps}; ${lastCheckpoint ? `saved ${lastCheckpoint}` : "no step finished, nothing was saved"}. ` +
                `Continue with the same command and --resume`,
            );
          }
        } catch (error) {
          spinner?.fail("training failed");
          throw error;
        } finally {
          process.off("SIGINT", onSigint);
        }
      },
    )
    .command(
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
        const { evalHeldOut, evalSequences, openCheckpoint } = await infer();
        const ckpt = await openCheckpoint(a.checkpoint, await device(a.device), a.threads);
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
    )
    .command(
      "generate",
      "sample text from a checkpoint",
      (c) =>
        c
          .option("checkpoint", { type: "string", demandOption: true, describe: "a checkpoint folder or a run folder (its latest)" })
          .option("prompt", { type: "string", demandOption: true, describe: "text to continue" })
          .option("max-tokens", { type: "number", default: 64, describe: "tokens to generate at most (stops at EOS)" })
          .option("temperature", { type: "number", default: 0, describe: "0: greedy" })
          .option("top-p", { type: "number", default: 1, describe: "nucleus sampling: keep the smallest set of tokens with this much probability" })
          .option("seed", { type: "number", default: 0, describe: "seeds sampling" })
          .option("device", { choices: ["cpu", "cuda", "auto"], default: "auto", describe: "where to run (auto: the GPU when one is usable)" })
          .option("threads", { type: "number", default: cpus().length, describe: "CPU threads" })
          .option("json", { type: "boolean", default: false, describe: "one JSON object on stdout" }),
      async (a) => {
        const { generate, openCheckpoint } = await infer();
        const ckpt = await openCheckpoint(a.checkpoint, await device(a.device), a.threads);
        try {
          const r = await generate(ckpt, a.prompt, { maxTokens: a["max-tokens"], temperature: a.temperature, topP: a["top-p"], seed: a.seed }, a.json ? undefined : (t) => process.stdout.write(t));
          if (a.json) process.stdout.write(JSON.stringify({ prompt: a.prompt, completion: r.text, ids: r.ids }) + "\n");
          else process.stdout.write("\n");
        } finally {
          ckpt.model.dispose();
        }
      },
    );
}
