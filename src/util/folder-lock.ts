import { readFileSync, unlinkSync } from "node:fs";
import { open, readFile, rm } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { RuntimeFailure } from "./errors.ts";

export const LOCK_FILE = ".chuxin.lock";

interface Holder {
  pid: number;
  host: string;
  command: string;
  started: string;
}

export interface FolderLock {
  release(): Promise<void>;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

async function readHolder(path: string): Promise<Holder | undefined> {
  // A holder writes its line right after creating the file: give a torn read one more look.
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      return JSON.parse(await readFile(path, "utf8")) as Holder;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return { pid: 0, host: hostname(), command: "unknown", started: "" };
}

/**
 * Takes `dir/.chuxin.lock` exclusively (O_EXCL), so two builds or two trainings never write one folder.
 * A lock whose process is gone on this host is taken over; one held from another host (a shared file
 * system) must be removed by hand, and the message says so. Released on return and on process exit.
 */
export async function lockFolder(dir: string, command: string): Promise<FolderLock> {
  const path = join(dir, LOCK_FILE);
  const me: Holder = { pid: process.pid, host: hostname(), command, started: new Date().toISOString() };
  for (let attempt = 0; ; attempt++) {
    try {
      const handle = await open(path, "wx");
      try {
        await handle.writeFile(JSON.stringify(me) + "\n");
      } finally {
        await handle.close();
      }
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST" || attempt >= 3) throw error;
      const holder = await readHolder(path);
      if (!holder) continue;
      const stale = holder.host === me.host && (holder.pid === 0 || !alive(holder.pid));
      if (stale) {
        // Only the file we read is removed: a lock another process took meanwhile has other content.
        const again = await readHolder(path);
        if (JSON.stringify(again) === JSON.stringify(holder)) await rm(path, { force: true });
        continue;
      }
      const since = holder.started ? `, since ${holder.started}` : "";
      throw new RuntimeFailure(
        `${dir} is in use by '${holder.command}' (pid ${holder.pid} on ${holder.host}${since}); wait for it to finish, ` +
          `or, if that process is gone, delete ${path}`,
      );
    }
  }
  let held = true;
  const releaseSync = () => {
    if (!held) return;
    held = false;
    try {
      if (JSON.parse(readFileSync(path, "utf8")).pid === me.pid) unlinkSync(path);
    } catch {
      /* already gone */
    }
  };
  process.once("exit", releaseSync);
  return {
    async release() {
      process.off("exit", releaseSync);
      releaseSync();
    },
  };
}
