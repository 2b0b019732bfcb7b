import { existsSync, readFileSync } from "node:fs";
import { cpus } from "node:os";
import { createRequire } from "node:module";
import { resolve } from "node:path";
import type { Argv, Options } from "yargs";
import type { FlagSpec, parseTokenCount as ParseTokenCount, parseTrainConfig as ParseTrainConfig } from "../../train/options.ts";
import type { TrainEvent } from "../../train/trainer.ts";
import { Interrupted, UsageError } from "../../util/errors.ts";
import { pickDevice } from "../device.ts";
import { outputMode, spinnerFor } from "../render.ts";
import { stopAfterStepOnSigint, trainRenderer } from "../train-events.ts";

// The train flags come from the option declarations (train/options.ts, zod): loaded only when the command is
// `train` (prepareTrainCommand, called by main before parsing), so other commands and --help start without zod.
let trainFlags: FlagSpec[] | undefined;
let parseTrainConfig: typeof ParseTrainConfig;
let parseTokenCount: typeof ParseTokenCount;

export async function prepareTrainCommand(): Promise<void> {
  const options = await import("../../train/options.ts");
  trainFlags = options.trainFlags();
  parseTrainConfig = options.parseTrainConfig;
  parseTokenCount = options.parseTokenCount;
}

function trainFlagOptions(): Record<string, Options> {
  return Object.fromEntries(
    (trainFlags ?? []).map((f) => [
      f.flag,
      { type: f.type, describe: f.describe, ...(f.choices ? { choices: f.choices } : {}), ...(f.default !== undefined ? { default: f.default } : {}),  },
    ]),
  );
}

// Loaded when a command runs, not when the CLI starts (--help stays fast).

/** Whether the command line names a flag (its default is then not what the user meant). */
function given(flag: string): boolean {
  return process.argv.slice(2).some((arg) => arg === `--${flag}` || arg.startsWith(`--${flag}=`));
}

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
          .option("resume", { type: "boolean", default: false, describe: "continue the run in --out from its last checkpoint, bit for bit (with --plan: the stage that was running)" })
          .option("plan", { type: "string", describe: "run a training plan (YAML: stages, each with its data and options, each starting from the last; see chuxin-data schema --plan) into --out/<stage>/" })
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
        if (a.plan !== undefined) {
          const planFlags = new Set(["out", "threads"]);
          const clash = trainFlags!.find((f) => !planFlags.has(f.flag) && given(f.flag));
          if (clash) throw new UsageError(`--${clash.flag} with --plan: set it in the plan file, for one stage or under 'defaults' (as ${clash.key}); the command line takes only --out, --threads, --device and --resume`);
          const { trainPlanCommand } = await import("./train-plan.ts");
          await trainPlanCommand({
            plan: a.plan as string,
            out: given("out") ? resolve(a.out as string) : undefined,
            threads: given("threads") ? (a.threads as number) : undefined,
            device: await pickDevice(a.device as string),
            resume: a.resume as boolean,
            json: a.json as boolean,
            world,
          });
          return;
        }
        if (a.data === undefined) throw new UsageError("train needs --data BUILD_FOLDER (a build's output), or --plan PLAN.yaml for a staged run; see chuxin-data train --help");
        const { resolveModelConfig } = await import("../../train/model-config.ts");
        const { train } = await import("../../train/trainer.ts");
        const { name, config: modelConfig } = await resolveModelConfig(a.model as string);
        // A number flag yargs could not read is NaN: name the text the user gave instead.
        const raw: Record<string, unknown> = Object.fromEntries(trainFlags!.map((f) => [f.key, Number.isNaN(a[f.flag]) ? givenText(f.flag) : (a[f.flag] ?? null)]));
        Object.assign(raw, { data: resolve(a.data as string), out: resolve(a.out as string), model: name, model_config: modelConfig, device: await pickDevice(a.device as string) });
        if (raw.tokens !== null) {
          const tokens = parseTokenCount(String(raw.tokens));
          if (tokens === undefined) throw new UsageError(`--tokens ${JSON.stringify(raw.tokens)}: not a token count; write it as a number with an optional K, M, B or T (e.g. 2T, 500M)`);
          if (given("steps")) throw new UsageError("--tokens and --steps both set the run's length; give one of them");
          raw.tokens = tokens;
        }
        if (typeof raw.init_from === "string" && existsSync(raw.init_from)) raw.init_from = resolve(raw.init_from);
        const parsed = parseTrainConfig(raw);
        if (!parsed.ok) throw new UsageError(parsed.problems.join("; "));
        const config = parsed.config;
        const mode = outputMode(a.json as boolean);
        // Rank 0 alone reports; every rank's errors are printed by main, with its rank.
        const spinner = root ? (await spinnerFor(a.json as boolean))?.start("starting") : undefined;
        const sigint = stopAfterStepOnSigint();
        const renderer = trainRenderer({ mode, spinner, device: config.device, steps: config.steps, stopped: sigint.stopped });
        const onEvent = (e: TrainEvent) => {
          if (root) renderer.onEvent(e);
        };
        const totalSteps = () => renderer.totalSteps();
        // --eval-tasks: prepared here (train/ does not import eval/); only rank 0 scores them.
        const benchmarks =
          config.eval_tasks && config.eval_tasks_every > 0 && root
            ? await (await import("../../eval/during-training.ts")).trainingBenchmarks(config.eval_tasks, config.data, config.model_config, config.eval_limit, (message) => onEvent({ type: "note", message }))
            : undefined;
        if (config.eval_tasks && config.eval_tasks_every === 0) throw new UsageError("--eval-tasks needs --eval-tasks-every K (steps between runs)");
        let lastCheckpoint: string | undefined;
        let lastStep = 0;
        // Only rank 0 sees the step events.
        const offTerm = (await import("../launch.ts")).stopOnLauncherSignal(process.env, () => (root ? `after step ${lastStep} of ${totalSteps()}` : "while training"));
        try {
          await train(config, {
            resume: a.resume as boolean,
            onEvent: (e) => {
              if (e.type === "checkpoint") lastCheckpoint = e.path;
              if (e.type === "step") lastStep = e.step;
              onEvent(e);
            },
            shouldStop: sigint.stopped,
            world,
            modelGiven: given("model"),
            benchmarks,
          });
          spinner?.stop();
          if (sigint.stopped() && lastStep < totalSteps()) {
            const again = ["chuxin-data", ...process.argv.slice(2).filter((arg) => arg !== "--resume"), "--resume"].map(shellWord).join(" ");
            throw new Interrupted(
              `stopped at step ${lastStep} of ${totalSteps()} (Ctrl-C); ${lastCheckpoint ? `checkpoint saved: ${lastCheckpoint}` : "no step finished, so nothing was saved"}; ` +
                `resume with: ${again}`,
            );
          }
        } catch (error) {
          if (error instanceof Interrupted) spinner?.stop();
          else spinner?.fail("training failed");
          throw error;
        } finally {
          sigint.off();
          offTerm();
        }
      },
    );
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
