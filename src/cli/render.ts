import type { Ora } from "ora";
import type { ProgressEvent, ProgressSink, Stage } from "../pipeline/progress.ts";
import { redactSecrets } from "../util/errors.ts";

export type OutputMode = "tty" | "plain" | "json";

export function outputMode(json: boolean): OutputMode {
  if (json) return "json";
  // A pseudo-terminal without a size (columns 0) makes ora's line clearing run away: treat it as plain.
  const quiet = !!process.env.CI || "NO_COLOR" in process.env || !process.stderr.isTTY || !(process.stderr.columns > 0);
  return quiet ? "plain" : "tty";
}

function rate(done: number, seconds: number): string {
  if (seconds <= 0) return "";
  const r = done / seconds;
  return r >= 1e6 ? `${(r / 1e6).toFixed(2)}M/s` : r >= 1e3 ? `${(r / 1e3).toFixed(1)}k/s` : `${r.toFixed(0)}/s`;
}

/**
 * Renders progress events: an ora spinner per stage with counts, rate and ETA on a terminal; one line per
 * stage when not a TTY (or under CI / NO_COLOR); NDJSON on stdout with --json.
 */
export async function progressRenderer(mode: OutputMode): Promise<{ sink: ProgressSink; stop: (failed?: boolean) => void }> {
  if (mode === "json") {
    return { sink: (e) => process.stdout.write(JSON.stringify({ ...e, time: new Date().toISOString() }) + "\n"), stop: () => {} };
  }
  // ora only where a spinner is drawn: plain and JSON output never load it.
  const ora = mode === "tty" ? (await import("ora")).default : undefined;
  let spinner: Ora | undefined;
  let started = 0;
  let current: Stage | undefined;
  let download: { path: string; started: number; lastLine: number } | undefined;
  const sink = (e: ProgressEvent) => {
    if (e.type === "download_progress") {
      const now = performance.now();
      if (download?.path !== e.path) download = { path: e.path, started: now, lastLine: now };
      const seconds = (now - download.started) / 1000;
      const mbs = seconds > 0 ? e.received / 1e6 / seconds : 0;
      const eta = mbs > 0 ? ` ETA ${Math.max(0, (e.total - e.received) / 1e6 / mbs).toFixed(0)}s` : "";
      const text = `download: ${e.path} ${(e.received / 1e6).toFixed(1)}/${(e.total / 1e6).toFixed(1)} MB ${mbs.toFixed(1)} MB/s${eta}`;
      if (spinner) spinner.text = text;
      else if (now - download.lastLine >= 10_000) {
        download.lastLine = now;
        process.stderr.write(`  ${text}\n`);
      }
      return;
    }
    if (e.type === "stage_start") {
      current = e.stage;
      started = performance.now();
      if (ora) spinner = ora({ text: e.stage, stream: process.stderr }).start();
    } else if (e.type === "stage_progress" && spinner) {
      const seconds = (performance.now() - started) / 1000;
      const eta = e.total && e.done > 0 ? ` ETA ${Math.max(0, (seconds * (e.total - e.done)) / e.done).toFixed(0)}s` : "";
      const mb = e.bytes !== undefined ? ` ${(e.bytes / 1e6).toFixed(1)} MB` : "";
      spinner.text = `${e.stage}: ${e.done.toLocaleString("en-US")}${e.total ? `/${e.total.toLocaleString("en-US")}` : ""} ${e.unit ?? ""}${mb} ${rate(e.done, seconds)}${eta}`;
    } else if (e.type === "stage_end") {
      const text = `${e.stage}: ${e.done !== undefined ? `${e.done.toLocaleString("en-US")} ${e.unit ?? ""} ` : ""}in ${e.seconds.toFixed(2)}s${e.reused ? " (reused cached work)" : ""}`;
      if (spinner) spinner.succeed(text);
      else process.stderr.write(`✓ ${text}\n`);
      spinner = undefined;
      current = undefined;
    } else if (e.type === "note" || e.type === "retry") {
      const text = e.type === "note" ? e.message : `retry ${e.attempt}: ${e.what}: ${redactSecrets(e.error)}`;
      if (spinner) spinner.info(text).start();
      else process.stderr.write(`  ${text}\n`);
    }
  };
  return {
    sink,
    stop: (failed) => {
      if (spinner && failed) spinner.fail(`${current ?? ""} failed`);
      else spinner?.stop();
    },
  };
}

/** An ora spinner on stderr when output is a terminal; none for --json, CI or NO_COLOR (the caller prints lines). */
export const spinnerFor = async (json: boolean) => (outputMode(json) === "tty" ? (await import("ora")).default({ stream: process.stderr }) : undefined);
