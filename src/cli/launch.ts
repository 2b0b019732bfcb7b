/**
 * `train --nproc-per-node N`: starts N ranks of this same command on this machine with torchrun's variables
 * (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), passes rank 0's output through and
 * the others' errors (each line carries its rank), and stops every rank when one fails.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { cpus } from "node:os";
import { createInterface } from "node:readline";
import { ChildFailed } from "../util/errors.ts";
import { freePort } from "../util/free-port.ts";

/** args: this command's arguments without --nproc-per-node. Throws ChildFailed (with the first failed rank's status) when a rank fails. */
export async function launchLocalRanks(n: number, args: string[], masterPort: number, note: (line: string) => void): Promise<void> {
  const port = masterPort > 0 ? masterPort : await freePort();
  // Each rank gets its share of the cores unless --threads says otherwise.
  const threads = args.some((a) => a === "--threads" || a.startsWith("--threads=")) ? [] : ["--threads", String(Math.max(1, Math.floor(cpus().length / n)))];
  note(`starting ${n} ranks on this machine (rendezvous on 127.0.0.1:${port})`);
  const children: ChildProcess[] = [];
  let firstFailure: { rank: number; code: number; how: string } | undefined;
  let killTimer: NodeJS.Timeout | undefined;
  const stopOthers = () => {
    if (killTimer) return;
    // The others notice a dead peer at their next collective and stop with their own message; give them that
    // chance, then end whoever is left.
    killTimer = setTimeout(() => {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGTERM");
      setTimeout(() => {
        for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
      }, 5000).unref();
    }, 10_000);
    killTimer.unref();
  };
  const forward = (signal: NodeJS.Signals) => () => {
    for (const c of children) if (c.exitCode === null) c.kill(signal);
  };
  const onInt = forward("SIGINT");
  const onTerm = forward("SIGTERM");
  process.on("SIGINT", onInt);
  process.on("SIGTERM", onTerm);
  const exits: Promise<void>[] = [];
  for (let rank = 0; rank < n; rank++) {
    const env = {
      ...process.env,
      ...{ RANK: String(rank), WORLD_SIZE: String(n), LOCAL_RANK: String(rank), LOCAL_WORLD_SIZE: String(n), MASTER_ADDR: "127.0.0.1", MASTER_PORT: String(port) },
      CHUXIN_LAUNCHER_PID: String(process.pid),
    };
    // Their own process group: a Ctrl-C reaches the launcher alone, which passes it on once (a second SIGINT
    // aborts a rank); each rank exits if the launcher disappears (watchLauncher).
    const child = spawn(process.execPath, [...process.execArgv, process.argv[1]!, ...args, ...threads], {
      env,
      detached: true,
      stdio: rank === 0 ? ["ignore", "inherit", "inherit"] : ["ignore", "ignore", "pipe"],
    });
    children.push(child);
    if (child.stderr) createInterface({ input: child.stderr }).on("line", (line) => process.stderr.write(line + "\n"));
    exits.push(
      new Promise((resolve) => {
        child.once("exit", (code, signal) => {
          if ((code !== 0 || signal) && !firstFailure) {
            firstFailure = { rank, code: code ?? 1, how: signal ? `was killed by ${signal}` : `exited with status ${code}` };
            note(`rank ${rank} ${firstFailure.how}; stopping the other ranks`);
            stopOthers();
          }
          resolve();
        });
      }),
    );
  }
  note(`ranks' process ids: ${children.map((c, r) => `${r}=${c.pid}`).join(" ")}`);
  await Promise.all(exits);
  process.off("SIGINT", onInt);
  process.off("SIGTERM", onTerm);
  if (killTimer) clearTimeout(killTimer);
  if (firstFailure) throw new ChildFailed(`rank ${firstFailure.rank} of ${n} ${firstFailure.how} (its messages are above)`, firstFailure.code);
}

/** In a rank started by launchLocalRanks: exit when the launcher is gone (it was killed), instead of training on alone. */
export function watchLauncher(env: NodeJS.ProcessEnv): void {
  const pid = Number(env.CHUXIN_LAUNCHER_PID);
  if (!pid) return;
  setInterval(() => {
    try {
      process.kill(pid, 0);
    } catch {
      process.stderr.write(`rank ${env.RANK}: the launcher (pid ${pid}) is gone; stopping\n`);
      process.exit(1);
    }
  }, 2000).unref();
}
