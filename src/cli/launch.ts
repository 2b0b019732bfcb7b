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

/** args: this command's arguments without --nproc-per-node. Throws ChildFailed (with the failed rank's status) when a rank fails. */
export async function launchLocalRanks(n: number, args: string[], masterPort: number, note: (line: string) => void): Promise<void> {
  const port = masterPort > 0 ? masterPort : await freePort();
  // Each rank gets its share of the cores unless --threads says otherwise.
  const threads = args.some((a) => a === "--threads" || a.startsWith("--threads=")) ? [] : ["--threads", String(Math.max(1, Math.floor(cpus().length / n)))];
  note(`starting ${n} ranks on this machine (rendezvous on 127.0.0.1:${port})`);
  const children: ChildProcess[] = [];
  // The rank to blame: the first to fail on its own. A rank killed by a signal this launcher did not send is the
  // cause over one that exited with an error, which its dead peer may have caused and may have reported first.
  let cause: { rank: number; code: number; how: string; signal: boolean } | undefined;
  let stopping = false;
  let killTimer: NodeJS.Timeout | undefined;
  const stopOthers = () => {
    if (killTimer) return;
    // The others mostly notice a dead peer at their next collective and stop with their own message; give them
    // that chance, then stop whoever is left (a gloo send to a dead peer can wait out the whole --dist-timeout),
    // each saying where it was (stopOnLauncherSignal).
    killTimer = setTimeout(() => {
      stopping = true;
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGTERM");
      setTimeout(() => {
        for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
      }, 5000).unref();
    }, 10_000);
    killTimer.unref();
  };
  const forward = (signal: NodeJS.Signals) => () => {
    stopping = true;
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
        // "close", not "exit": by then the rank's last stderr lines have been passed on.
        child.once("close", (code, signal) => {
          const ownSignal = signal !== null && !stopping;
          if ((code !== 0 || signal) && (!cause || (ownSignal && !cause.signal))) {
            const how = signal ? `was killed by ${signal}` : `exited with status ${code}`;
            if (!stopping) note(`rank ${rank} ${how}; stopping the other ranks`);
            cause = { rank, code: code ?? 1, how, signal: ownSignal };
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
  if (cause) throw new ChildFailed(`rank ${cause.rank} of ${n} ${cause.how} (its messages are above)`, cause.code);
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
