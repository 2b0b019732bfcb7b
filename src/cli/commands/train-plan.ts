/** `train --plan`: a staged run (train/plan-run.ts), rendered as `train` renders one run, plus each stage's start and end. */
import { basename, extname, resolve } from "node:path";
import type { World } from "../../train/distributed.ts";
import { Interrupted } from "../../util/errors.ts";
import { outputMode, progressRenderer, spinnerFor } from "../render.ts";
import { stopAfterStepOnSigint, trainRenderer } from "../train-events.ts";

export interface TrainPlanArgs {
  plan: string;
  /** default: runs/<plan name> */
  out: string | undefined;
  threads: number | undefined;
  device: "cpu" | "cuda";
  resume: boolean;
  json: boolean;
  world: World;
}

export async function trainPlanCommand(a: TrainPlanArgs): Promise<void> {
  const { loadPlan } = await import("../../train/plan.ts");
  const { runPlan } = await import("../../train/plan-run.ts");
  const loaded = await loadPlan(a.plan);
  const out = a.out ?? resolve("runs", loaded.plan.name ?? basename(a.plan, extname(a.plan)));
  const root = a.world.rank === 0;
  const mode = outputMode(a.json);
  let spinner = root ? (await spinnerFor(a.json))?.start("starting") : undefined;
  const sigint = stopAfterStepOnSigint();
  const renderer = trainRenderer({ mode, spinner, device: a.device, steps: 0, stopped: sigint.stopped });
  let where = "before the first stage";
  const offTerm = (await import("../launch.ts")).stopOnLauncherSignal(process.env, () => where);
  try {
    const result = await runPlan(loaded, out, {
      resume: a.resume,
      device: a.device,
      ...(a.threads !== undefined ? { threads: a.threads } : {}),
      world: a.world,
      shouldStop: sigint.stopped,
      onEvent: (e) => {
        if (e.type === "stage") where = `in stage ${e.stage}`;
        if (root) renderer.onEvent(e);
      },
      // A stage's --eval-tasks, prepared as train prepares them (the tasks are loaded, the data's tokenizer found).
      benchmarksFor: async (config) =>
        (await import("../../eval/during-training.ts")).trainingBenchmarks(config.eval_tasks, config.data, config.model_config, config.eval_limit, (message) => {
          if (root) renderer.onEvent({ type: "note", message });
        }),
      buildData: async (recipe, dataOut) => {
        // The build draws its own progress: the spinner pauses meanwhile.
        spinner?.stop();
        const { build } = await import("../../pipeline/build.ts");
        const r = await progressRenderer(mode);
        try {
          await build({ recipePath: recipe, outDir: dataOut, sink: r.sink });
          r.stop();
        } catch (error) {
          r.stop(true);
          throw error;
        }
        spinner?.start("training");
      },
    });
    spinner?.stop();
    if (!result.finished) {
      const again = ["chuxin-data", "train", "--plan", a.plan, "--out", out, "--resume"].join(" ");
      throw new Interrupted(`stopped ${where} (Ctrl-C); every finished step up to the last checkpoint is kept; resume with: ${again}`);
    }
    if (root) process.stderr.write(`plan done: ${loaded.stages.length} stages in ${out} (plan.lock.json records each stage's final checkpoint)\n`);
  } catch (error) {
    if (!(error instanceof Interrupted)) spinner?.fail("training failed");
    spinner = undefined;
    throw error;
  } finally {
    sigint.off();
    offTerm();
  }
}
