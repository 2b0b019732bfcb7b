/**
 * Runs a model-written program against its tests (HumanEval's pass@1): each in its own python3 process, in a
 * fresh temporary folder that is removed afterwards, with a wall-clock limit, an empty environment, and, where the
 * kernel allows user namespaces, no network and a PID namespace of its own (`unshare -rn --pid --fork
 * --kill-child`): the program is the namespace's init, so when it ends or is killed every process it started ends
 * too, even one that called setsid(). This is not a full sandbox: the program can read what this user can read.
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

/** How generated programs are started, and what that confines (said in results.json). */
export interface Confinement {
  prefix: string[];
  /** e.g. "network and PID namespaces (unshare -rn --pid --fork --kill-child)" */
  description: string;
  network: boolean;
  /** every descendant dies with the program */
  pidNamespace: boolean;
}

/** The strongest first; each is probed once. */
const LEVELS: Omit<Confinement, "description">[] = [
  { prefix: ["unshare", "-rn", "--pid", "--fork", "--kill-child"], network: false, pidNamespace: true },
  { prefix: ["unshare", "-rn"], network: false, pidNamespace: false },
];

let chosen: Confinement | undefined;

/** After the program exits, how long its pipes may stay open (a descendant holding them) before they are dropped. */
const DRAIN_MS = 200;

/** How programs are started: in new namespaces where that works; refused without one unless the user allows the network. */
export function executionConfinement(allowNetwork: boolean, python: string): Confinement {
  if (chosen) return chosen;
  for (const level of LEVELS) {
    const [cmd, ...args] = level.prefix;
    const probe = spawnSync(cmd!, [...args, python, "-c", "pass"], { stdio: "ignore", timeout: 10_000 });
    if (probe.status === 0) {
      const what = level.pidNamespace ? "network and PID namespaces" : "a network namespace (no PID namespace: a program's escaped descendants are killed by process group only)";
      return (chosen = { ...level, description: `${what} (${level.prefix.join(" ")})` });
    }
  }
  const plain = spawnSync(python, ["-c", "pass"], { stdio: "ignore", timeout: 10_000 });
  if (plain.status !== 0) throw new UsageError(`HumanEval runs the generated code with ${python}, which cannot be started here; install python3 or set CHUXIN_PYTHON`);
  if (!allowNetwork) {
    throw new UsageError(
      "HumanEval runs model-written code, and this machine cannot cut it off from the network (`unshare -rn` failed: user namespaces are off); run eval in a container without network, or pass --allow-network to accept the risk",
    );
  }
  return (chosen = { prefix: [], network: true, pidNamespace: false, description: "none: network allowed (--allow-network), process group killed at the limit" });
}

export async function runProgram(program: string, timeoutS: number, confinement: Confinement, python: string): Promise<Outcome> {
  const dir = await mkdtemp(join(tmpdir(), "chuxin-exec-"));
  try {
    const file = join(dir, "program.py");
    await writeFile(file, program);
    const [cmd, ...args] = [...confinement.prefix, python, "-I", file];
    return await new Promise<Outcome>((resolve) => {
      const child = spawn(cmd!, args, { cwd: dir, env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: dir, TMPDIR: dir, PYTHONHASHSEED: "0" }, stdio: ["ignore", "ignore", "pipe"], detached: true });
      let stderr = "";
      let settled = false;
      child.stderr.on("data", (d) => (stderr = (stderr + d).slice(-4000)));
      const killGroup = () => {
        try {
          process.kill(-child.pid!, "SIGKILL");
        } catch {
          /* already gone */
        }
      };
      // The answer never waits on a descendant: at the limit, or shortly after the program exits, the pipes are
      // dropped and whatever is left of its process group killed (in a PID namespace, the kernel has killed it).
      const finish = (outcome: Outcome) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        killGroup();
        child.stderr.destroy();
        resolve(outcome);
      };
      const timer = setTimeout(() => finish({ passed: false, result: "timed out" }), timeoutS * 1000);
      child.on("error", (error) => finish({ passed: false, result: `failed: ${error.message}` }));
      child.on("exit", (code) => {
        const judge = () => {
          if (code === 0) return finish({ passed: true, result: "passed" });
          const last = stderr.trim().split("\n").pop() ?? "";
          finish({ passed: false, result: `failed: ${last || `exit ${code}`}` });
        };
        // Its last stderr lines may still be in the pipe: read them, but not past DRAIN_MS or the limit.
        if (child.stderr.readableEnded) judge();
        else {
          const drain = setTimeout(judge, DRAIN_MS);
          child.stderr.once("end", () => {
            clearTimeout(drain);
            judge();
          });
        }
      });
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
