import { readFileSync } from "node:fs";
import { cpus } from "node:os";
import { createRequire } from "node:module";
import { resolve } from "node:path";
import type { Argv, Options } from "yargs";
import type { FlagSpec, parseTrainConfig as ParseTrainConfig } from "../../train/options.ts";
import type { TrainEvent } from "../../train/trainer.ts";
import { Interrupted, UsageError } from "../../util/errors.ts";
import { pickDevice } from "../device.ts";
import { outputMode, spinnerFor } from "../render.ts";

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

/** What the command line gave a flag (`--flag value` or `--flag=value`), as text; the last one wins, as in yargs. */
function givenText(flag: string): string {
  const argv = process.argv.slice(2);
  let given = "";
  argv.forEach((arg, i) => {
    if (arg === `--${flag}`) given = argv[i + 1] ?? "";
    else if (arg.startsWith(`--${flag}=`)) given = arg.slice(flag.length + 3);
  });
  return given;
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
          .option("nproc-per-node", { type: "number", default: 1, describe: "start this many ranks on this machine (data parallelism; under torchrun or srun leave it out)" })
          .option("master-port", { type: "number", default: 0, describe: "with --nproc-per-node: rank 0's rendezvous port (default: a free one)" })
          .config("config", "a YAML (or JSON) run config whose keys are these flags, e.g. `lr: 3e-4`; flags given on the command line win", (path: string) => {
            try {
              return createRequire(import.meta.url)("yaml").parse(readFileSync(path, "utf8")) ?? {};
            } catch (error) {
              throw new UsageError(`--config ${path}: ${(error as Error).message}`);
            }
          }),
      async (a) => {
        const nproc = a["nproc-per-node"] as number;
        const { maxLocalRanks } = await import("../launch.ts");
        if (!Number.isInteger(nproc) || nproc < 1 || nproc > maxLocalRanks()) {
          throw new UsageError(
            `--nproc-per-node ${a["nproc-per-node"]}: must be a whole number of ranks from 1 to ${maxLocalRanks()} (one a GPU, or at most one a core of this machine's ${cpus().length}); ` +
              `to train on more, start the ranks on several machines with torchrun or srun`,
          );
        }
        const { worldFromEnv } = await import("../../train/distributed.ts");
        const world = worldFromEnv(process.env);
        if (nproc > 1) {
          if (world.world > 1) throw new UsageError(`--nproc-per-node starts ranks itself; under a launcher (WORLD_SIZE=${world.world}) leave it out`);
          const { launchLocalRanks } = await import("../launch.ts");
          await launchLocalRanks(nproc, withoutLauncherFlags(process.argv.slice(2)), a["master-port"] as number, (line) => process.stderr.write(line + "\n"));
          return;
        }
        if (world.world > 1) {
          const { loadAddon } = await import("../../native/addon.ts");
          (await import("../launch.ts")).watchLauncher(process.env, (pid) => loadAddon().dieWithParent(pid));
        }
        const root = world.rank === 0;
        const { resolveModelConfig } = await import("../../train/model-config.ts");
        const { train } = await import("../../train/trainer.ts");
        const { name, config: modelConfig } = await resolveModelConfig(a.model as string);
        // A number flag yargs could not read is NaN: name the text the user gave instead.
        const raw: Record<string, unknown> = Object.fromEntries(trainFlags!.map((f) => [f.key, Number.isNaN(a[f.flag]) ? givenText(f.flag) : (a[f.flag] ?? null)]));
        Object.assign(raw, { data: resolve(a.data as string), out: resolve(a.out as string), model: name, model_config: modelConfig, device: await pickDevice(a.device as string) });
        const parsed = parseTrainConfig(raw);
        if (!parsed.ok) throw new UsageError(parsed.problems.join("; "));
        const config = parsed.config;
        const mode = outputMode(a.json as boolean);
        // Rank 0 alone reports; every rank's errors are printed by main, with its rank.
        const spinner = root ? (await spinnerFor(a.json as boolean))?.start("starting") : undefined;
        let stop = false;
        const onSigint = () => {
          stop = true;
          process.stderr.write("\nstopping after this step (Ctrl-C again to abort)\n");
          process.once("SIGINT", () => process.exit(130));
        };
        process.once("SIGINT", onSigint);
        const onEvent = (e: TrainEvent) => {
          if (!root) return;
          if (mode === "json") return void process.stdout.write(JSON.stringify({ ...e, time: new Date().toISOString() }) + "\n");
          let line: string | undefined;
          if (e.type === "start") line = `${e.resumed_from ? `resuming from ${e.resumed_from}` : "training"} on ${e.backend}: ${e.parameters.toLocaleString("en-US")} parameters, ${e.tokens_per_step} tokens/step`;
          if (e.type === "step") {
            const text = `step ${e.step}/${config.steps} loss ${e.loss.toFixed(4)} lr ${e.lr.toExponential(2)} |g| ${e.grad_norm.toFixed(3)} ${Math.round(e.tokens_per_s).toLocaleString("en-US")} tok/s ETA ${clock(e.eta_s)}`;
            if (spinner) spinner.text = text;
            else if (e.step % 10 === 0 || e.step === config.steps) line = text;
          }
          if (e.type === "eval") line = `eval at step ${e.step}: loss ${e.eval_loss.toFixed(4)}, perplexity ${e.perplexity.toFixed(2)}`;
          if (e.type === "benchmarks") {
            line = `benchmarks at step ${e.step}: ${Object.entries(e.tasks)
              .map(([t, ms]) => `${t} ${Object.entries(ms).filter(([k]) => !k.endsWith("_stderr")).map(([k, v]) => `${k} ${v.toFixed(4)}${Number.isFinite(ms[`${k}_stderr`]) ? ` ± ${ms[`${k}_stderr`]!.toFixed(4)}` : ""}`).join(" ")}`)
              .join(", ")}`;
          }
          if (e.type === "checkpoint") line = `saved ${e.path}${e.replicas ? ` (weights identical on ${e.replicas.ranks} ranks, digest ${e.replicas.digest})` : ""}`;
          if (e.type === "note") line = e.message;
          if (e.type === "memory") {
            const gb = (bytes: number) => `${(bytes / 2 ** 30).toFixed(2)} GiB`;
            line = `memory on ${config.device}${e.ranks > 1 ? ` per rank (${e.ranks} ranks, ZeRO-${e.zero})` : ""}: ${gb(e.states_bytes)} weights, gradients and AdamW state + ${gb(e.activation_bytes)} activations at micro-batch ${e.micro_batch} × ${e.context}${e.recompute ? " (recomputed)" : ""}`;
          }
          // A run stopped by Ctrl-C says so once, below, instead of "done".
          if (e.type === "done" && !(stop && e.step < config.steps)) line = `done at step ${e.step}: ${e.out} (metrics.jsonl, loss.svg)`;
          if (line) {
            if (spinner) spinner.info(line).start();
            else process.stderr.write(line + "\n");
          }
        };
        // --eval-tasks: prepared here (train/ does not import eval/); only rank 0 scores them.
        const benchmarks =
          config.eval_tasks && config.eval_tasks_every > 0 && root
            ? await (await import("../../eval/during-training.ts")).trainingBenchmarks(config.eval_tasks, config.data, config.model_config, config.eval_limit, (message) => onEvent({ type: "note", message }))
            : undefined;
        if (config.eval_tasks && config.eval_tasks_every === 0) throw new UsageError("--eval-tasks needs --eval-tasks-every K (steps between runs)");
        let lastCheckpoint: string | undefined;
        let lastStep = 0;
        // Only rank 0 sees the step events.
        const offTerm = (await import("../launch.ts")).stopOnLauncherSignal(process.env, () => (root ? `after step ${lastStep} of ${config.steps}` : "while training"));
        try {
          await train(config, {
            resume: a.resume as boolean,
            onEvent: (e) => {
              if (e.type === "checkpoint") lastCheckpoint = e.path;
              if (e.type === "step") lastStep = e.step;
              onEvent(e);
            },
            shouldStop: () => stop,
            world,
            benchmarks,
          });
          spinner?.stop();
          if (stop && lastStep < config.steps) {
            const again = ["chuxin-data", ...process.argv.slice(2).filter((arg) => arg !== "--resume"), "--resume"].map(shellWord).join(" ");
            throw new Interrupted(
              `stopped at step ${lastStep} of ${config.steps} (Ctrl-C); ${lastCheckpoint ? `checkpoint saved: ${lastCheckpoint}` : "no step finished, so nothing was saved"}; ` +
                `resume with: ${again}`,
            );
          }
        } catch (error) {
          if (error instanceof Interrupted) spinner?.stop();
          else spinner?.fail("training failed");
          throw error;
        } finally {
          process.off("SIGINT", onSigint);
          offTerm();
        }
      },
    );
}

/** Seconds as h:mm:ss. */
export function clock(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  return `${Math.floor(s / 3600)}:${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}

/** An argument as a POSIX shell reads it back. */
function shellWord(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, "'\\''")}'`;
}

/** This command's arguments for the ranks the launcher starts: the same, less the launcher's own flags. */
function withoutLauncherFlags(args: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--nproc-per-node" || a === "--master-port") i++;
    else if (!a.startsWith("--nproc-per-node=") && !a.startsWith("--master-port=")) out.push(a);
  }
  return out;
}
