/**
 * Runs a model-written program against its tests (HumanEval's pass@1): each in its own python3 process, in a
 * fresh temporary folder that is removed afterwards, with a wall-clock limit (the whole process group is
 * killed), an empty environment, and no network (a new network namespace through `unshare -rn`, which has only
 * a loopback device that is down). This is not a full sandbox: the program can read what this user can read.
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UsageError } from "../util/errors.ts";

export interface Outcome {
  passed: boolean;
  /** "passed", "failed: <last stderr line>", "timed out", … (the harness's code_eval result strings). */
  result: string;
}

let isolation: string[] | undefined;

/** How programs are started: through `unshare -rn` where it works; refused otherwise unless the user allows the network. */
export function executionPrefix(allowNetwork: boolean, python: string): string[] {
  if (isolation) return isolation;
  const probe = spawnSync("unshare", ["-rn", python, "-c", "pass"], { stdio: "ignore", timeout: 10_000 });
  if (probe.status === 0) return (isolation = ["unshare", "-rn"]);
  const plain = spawnSync(python, ["-c", "pass"], { stdio: "ignore", timeout: 10_000 });
  if (plain.status !== 0) throw new UsageError(`HumanEval runs the generated code with ${python}, which cannot be started here; install python3 or set CHUXIN_PYTHON`);
  if (!allowNetwork) {
    throw new UsageError(
      "HumanEval runs model-written code, and this machine cannot cut it off from the network (`unshare -rn` failed: user namespaces are off); run eval in a container without network, or pass --allow-network to accept the risk",
    );
  }
  return (isolation = []);
}

export async function runProgram(program: string, timeoutS: number, prefix: string[], python: string): Promise<Outcome> {
  const dir = await mkdtemp(join(tmpdir(), "chuxin-exec-"));
  try {
    const file = join(dir, "program.py");
    await writeFile(file, program);
    const [cmd, ...args] = [...prefix, python, "-I", file];
    return await new Promise<Outcome>((resolve) => {
      const child = spawn(cmd!, args, { cwd: dir, env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: dir, TMPDIR: dir, PYTHONHASHSEED: "0" }, stdio: ["ignore", "ignore", "pipe"], detached: true });
      let stderr = "";
      let timedOut = false;
      child.stderr.on("data", (d) => (stderr = (stderr + d).slice(-4000)));
      const timer = setTimeout(() => {
        timedOut = true;
        try {
          process.kill(-child.pid!, "SIGKILL");
        } catch {
          /* already gone */
        }
      }, timeoutS * 1000);
      child.on("error", (error) => {
        clearTimeout(timer);
        resolve({ passed: false, result: `failed: ${error.message}` });
      });
      child.on("close", (code) => {
        clearTimeout(timer);
        if (timedOut) return resolve({ passed: false, result: "timed out" });
        if (code === 0) return resolve({ passed: true, result: "passed" });
        const last = stderr.trim().split("\n").pop() ?? "";
        resolve({ passed: false, result: `failed: ${last || `exit ${code}`}` });
      });
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
