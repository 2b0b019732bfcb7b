/** How `train` shows its events: NDJSON with --json, else a line each (a spinner's text for steps on a terminal). */
import type { Ora } from "ora";
import type { PlanEvent } from "../train/plan-run.ts";
import type { TrainEvent } from "../train/trainer.ts";
import type { OutputMode } from "./render.ts";

/** Seconds as h:mm:ss. */
export function clock(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  return `${Math.floor(s / 3600)}:${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}

/** Ctrl-C stops after the current step (a second one aborts): whether it was pressed, and the handler's removal. */
export function stopAfterStepOnSigint(): { stopped: () => boolean; off: () => void } {
  let stop = false;
  const onSigint = () => {
    stop = true;
    process.stderr.write("\nstopping after this step (Ctrl-C again to abort)\n");
    process.once("SIGINT", () => process.exit(130));
  };
  process.once("SIGINT", onSigint);
  return { stopped: () => stop, off: () => process.off("SIGINT", onSigint) };
}

export interface TrainRenderer {
  onEvent(e: TrainEvent | PlanEvent): void;
  /** the run's steps as the last start event said (--tokens decides them once the batch is known) */
  totalSteps(): number;
}

export function trainRenderer(o: { mode: OutputMode; spinner: Ora | undefined; device: string; steps: number; stopped: () => boolean }): TrainRenderer {
  const { mode, spinner } = o;
  let totalSteps = o.steps;
  let stage = "";
  const onEvent = (e: TrainEvent | PlanEvent) => {
    if (e.type === "start") totalSteps = e.steps;
    if (mode === "json") return void process.stdout.write(JSON.stringify({ ...e, time: new Date().toISOString() }) + "\n");
    let line: string | undefined;
    if (e.type === "stage") {
      stage = `[${e.stage}] `;
      const verb = { start: "starting", resume: "resuming", skip: "already finished:", done: "finished" }[e.status];
      line = `stage ${e.index + 1}/${e.count} ${verb} ${e.stage} (${e.out})`;
    }
    if (e.type === "stage_build") line = `stage ${e.stage}: building its data from ${e.recipe} into ${e.out}`;
    if (e.type === "start") line = `${e.resumed_from ? `resuming from ${e.resumed_from}` : "training"} on ${e.backend}: ${e.parameters.toLocaleString("en-US")} parameters, ${e.tokens_per_step} tokens/step`;
    if (e.type === "step") {
      const text = `${stage}step ${e.step}/${totalSteps} loss ${e.loss.toFixed(4)} lr ${e.lr.toExponential(2)} |g| ${e.grad_norm.toFixed(3)} ${Math.round(e.tokens_per_s).toLocaleString("en-US")} tok/s ETA ${clock(e.eta_s)}`;
      if (spinner) spinner.text = text;
      else if (e.step % 10 === 0 || e.step === totalSteps) line = text;
    }
    if (e.type === "eval") line = `eval at step ${e.step}: loss ${e.eval_loss.toFixed(4)}, perplexity ${e.perplexity.toFixed(2)}`;
    if (e.type === "benchmarks") {
      line = `benchmarks at step ${e.step}: ${Object.entries(e.tasks)
        .map(([t, ms]) => `${t} ${Object.entries(ms).filter(([k]) => !k.endsWith("_stderr")).map(([k, v]) => `${k} ${v.toFixed(4)}${Number.isFinite(ms[`${k}_stderr`]) ? ` ± ${ms[`${k}_stderr`]!.toFixed(4)}` : ""}`).join(" ")}`)
        .join(", ")}`;
    }
    if (e.type === "checkpoint") line = `saved ${e.path}${e.replicas ? ` (weights identical on ${e.replicas.ranks} ranks, digest ${e.replicas.digest})` : ""}`;
    if (e.type === "note") line = `${stage}${e.message}`;
    if (e.type === "memory") {
      const gb = (bytes: number) => `${(bytes / 2 ** 30).toFixed(2)} GiB`;
      const count = (n: number) => n.toLocaleString("en-US");
      line =
        `memory on ${o.device}${e.ranks > 1 ? ` per rank (${e.ranks} ranks, ZeRO-${e.zero})` : ""}: ${gb(e.states_bytes)} weights, gradients and AdamW state + ${gb(e.activation_bytes)} activations at micro-batch ${e.micro_batch} × ${count(e.context)}${e.recompute ? " (recomputed)" : ""}` +
        `; activations take ${count(Math.round(e.activation_bytes_per_token))} B/token (${count(Math.round(e.activation_bytes_per_token_recompute))} with --recompute)` +
        `, so ${gb(e.available_bytes)} (${e.available_source} + this run's activations) holds a context of up to ${count(e.largest_context)} tokens at micro-batch ${e.micro_batch} (${count(e.largest_context_recompute)} with --recompute)` +
        (e.context_parallel > 1 ? `, each sequence split over ${e.context_parallel} ranks` : "");
    }
    // A run stopped by Ctrl-C says so once, where it stops, instead of "done".
    if (e.type === "done" && !(o.stopped() && e.step < totalSteps)) line = `done at step ${e.step}: ${e.out} (metrics.jsonl, loss.svg)`;
    if (line) {
      if (spinner) spinner.info(line).start();
      else process.stderr.write(line + "\n");
    }
  };
  return { onEvent, totalSteps: () => totalSteps };
}
