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

/** The most ranks one machine runs: one a GPU, or one a core for CPU ranks (16 covers every GPU node we know of). */
export function maxLocalRanks(): number {
  return Math.max(16, cpus().length);
}

/** How long ranks get to stop on their own after a signal the launcher passed on, before it kills them. */
const STOP_GRACE_MS = 10_000;

/** args: this command's arguments without --nproc-per-node. Throws ChildFailed (with the failed rank's status) when a rank fails. */
export async function launchLocalRanks(n: number, args: string[], masterPort: number, note: (line: string) => void): Promise<void> {
  const port = masterPort > 0 ? masterPort : await freePort();
  // Each rank gets its share of the cores unless --threads says otherwise.
  const threads = args.some((a) => a === "--threads" || a.startsWith("--threads=")) ? [] : ["--threads", String(Math.max(1, Math.floor(cpus().length / n)))];
  note(`starting ${n} ranks on this machine (rendezvous on 127.0.0.1:${port})`);
  const children: ChildProcess[] = [];
  const alive = () => children.filter((c) => c.exitCode === null && c.signalCode === null);
  // The rank to blame: the first to fail on its own. A rank killed by a signal this launcher did not send is the
  // cause over one that exited with an error, which its dead peer may have caused and may have reported first.
  let cause: { rank: number; code: number; how: string; signal: boolean } | undefined;
  let stopping = false;
  let killTimer: NodeJS.Timeout | undefined;
  const killAfterGrace = () => {
    if (killTimer) return;
    killTimer = setTimeout(() => {
      for (const c of alive()) c.kill("SIGKILL");
    }, STOP_GRACE_MS);
    killTimer.unref();
  };
  let othersTimer: NodeJS.Timeout | undefined;
  const stopOthers = () => {
    if (othersTimer || stopping) return;
    // The others mostly notice a dead peer at their next collective and stop with their own message; give them
    // that chance, then stop whoever is left (a gloo send to a dead peer can wait out the whole --dist-timeout),
    // each saying where it was (stopOnLauncherSignal).
    othersTimer = setTimeout(() => {
      stopping = true;
      for (const c of alive()) c.kill("SIGTERM");
      killAfterGrace();
    }, STOP_GRACE_MS);
    othersTimer.unref();
  };
  // A signal to the launcher goes to every rank, which stops with its message; whoever is left after the grace
  // (or at a second signal) is killed. No rank outlives the launcher: each dies with it (watchLauncher).
  const forward = (signal: NodeJS.Signals) => () => {
    const again = stopping;
    stopping = true;
    for (const c of alive()) c.kill(again ? "SIGKILL" : signal);
    killAfterGrace();
  };
  const onInt = forward("SIGINT");
  const onTerm = forward("SIGTERM");
  process.on("SIGINT", onInt);
  process.on("SIGTERM", onTerm);
  const exits: Promise<void>[] = [];
  const failed = (rank: number, how: string, code: number, ownSignal: boolean) => {
    if (!cause || (ownSignal && !cause.signal)) {
      if (!stopping) note(`rank ${rank} ${how}; stopping the other ranks`);
      cause = { rank, code, how, signal: ownSignal };
      stopOthers();
    }
  };
  try {
    // One rank at a time, each started before the next: none is started once one has failed or a signal came.
    for (let rank = 0; rank < n && !cause && !stopping; rank++) {
      const env = {
        ...process.env,
        ...{ RANK: String(rank), WORLD_SIZE: String(n), LOCAL_RANK: String(rank), LOCAL_WORLD_SIZE: String(n), MASTER_ADDR: "127.0.0.1", MASTER_PORT: String(port) },
        CHUXIN_LAUNCHER_PID: String(process.pid),
      };
      // Their own process group: a Ctrl-C reaches the launcher alone, which passes it on once (a second SIGINT
      // kills the ranks); each rank dies with the launcher (watchLauncher).
      const child = spawn(process.execPath, [...process.execArgv, process.argv[1]!, ...args, ...threads], {
        env,
        detached: true,
        stdio: rank === 0 ? ["ignore", "inherit", "inherit"] : ["ignore", "ignore", "pipe"],
      });
      children.push(child);
      if (child.stderr) createInterface({ input: child.stderr }).on("line", (line) => process.stderr.write(line + "\n"));
      exits.push(
        new Promise((resolve) => {
          // "close", not "exit": by then the rank's last stderr lines have been passed on.
          child.once("close", (code, signal) => {
            if (code !== 0 || signal) failed(rank, signal ? `was killed by ${signal}` : `exited with status ${code}`, code ?? 1, signal !== null && !stopping);
            resolve();
          });
          // A process that could not be started emits no "close" of its own.
          child.once("error", (error) => {
            if (child.pid === undefined) {
              failed(rank, `could not be started (${error.message})`, 1, false);
              resolve();
            }
          });
        }),
      );
      await new Promise<void>((resolve) => {
        child.once("spawn", resolve);
        child.once("error", () => resolve());
      });
    }
    note(`ranks' process ids: ${children.map((c, r) => `${r}=${c.pid}`).join(" ")}`);
    await Promise.all(exits);
  } finally {
    process.off("SIGINT", onInt);
    process.off("SIGTERM", onTerm);
    clearTimeout(othersTimer);
    clearTimeout(killTimer);
  }
  if (cause) throw new ChildFailed(`rank ${cause.rank} of ${n} ${cause.how} (its messages are above)`, cause.code);
  if (children.length < n) throw new ChildFailed(`stopped after starting ${children.length} of ${n} ranks`, 1);
}

/**
 * In a rank started by launchLocalRanks: die with the launcher (the kernel's SIGKILL when it ends, on Linux), and
 * elsewhere exit when a poll finds it gone, instead of training on alone.
 */
export function watchLauncher(env: NodeJS.ProcessEnv, dieWithParent: (pid: number) => number): void {
  const pid = Number(env.CHUXIN_LAUNCHER_PID);
  if (!pid) return;
  if (process.ppid !== pid || dieWithParent(pid) === 0) {
    process.stderr.write(`rank ${env.RANK}: the launcher (pid ${pid}) is gone; stopping\n`);
    process.exit(1);
  }
  setInterval(() => {
    try {
      process.kill(pid, 0);
    } catch {
      process.stderr.write(`rank ${env.RANK}: the launcher (pid ${pid}) is gone; stopping\n`);
      process.exit(1);
    }
  }, 2000).unref();
}

/**
 * In a rank started by launchLocalRanks: the launcher's SIGTERM (it stops every rank once one fails, and passes
 * on its own) ends this rank at once with a message saying where it was, even while a collective waits on a peer
 * that is gone. Output stays consistent: checkpoints are written to a temporary name first, metrics line by line.
 */
export function stopOnLauncherSignal(env: NodeJS.ProcessEnv, where: () => string): () => void {
  if (!env.CHUXIN_LAUNCHER_PID) return () => {};
  const onTerm = () => {
    // Written synchronously (stderr is a pipe, a file or a terminal here).
    process.stderr.write(
      `chuxin-data: rank ${env.RANK}/${env.WORLD_SIZE}: error: stopped by SIGTERM from the launcher ${where()}: another rank failed (its message is above) or the launcher was stopped. Resume with --resume once every rank can run\n`,
    );
    // Then the signal's own default action, not process.exit(): that waits for the native call in flight, which
    // may be a collective waiting on the dead peer until --dist-timeout. With this listener gone (once), the
    // signal ends the process at once.
    process.kill(process.pid, "SIGTERM");
  };
  process.once("SIGTERM", onTerm);
  return () => process.off("SIGTERM", onTerm);
}
