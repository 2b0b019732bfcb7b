import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { access, mkdir, open, rename, rm, stat } from "node:fs/promises";
import { dirname } from "node:path";
import { RuntimeFailure, UsageError } from "./errors.ts";

/** A full disk (or quota) while writing `path`: say which file and how much it needed, not a bare errno. */
export function explainWriteError(error: unknown, path: string, bytes: number): unknown {
  const code = (error as NodeJS.ErrnoException)?.code;
  if (code !== "ENOSPC" && code !== "EDQUOT") return error;
  const mb = (bytes / 1e6).toFixed(1);
  return new RuntimeFailure(`no space left on the device writing ${path} (${mb} MB needed for this file); free space there or write elsewhere, then rerun`, { cause: error });
}

/** A temp path next to `path`, so the final rename never crosses file systems. */
export function tempPathFor(path: string): string {
  return `${path}.${randomBytes(4).toString("hex")}.tmp`;
}

/** Writes a file so that readers see either the old content or the whole new content, never a part. */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = tempPathFor(path);
  try {
    const handle = await open(tmp, "w");
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, path);
  } catch (error) {
    await rm(tmp, { force: true });
    throw explainWriteError(error, path, typeof data === "string" ? Buffer.byteLength(data) : data.byteLength);
  }
}

export async function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  await writeFileAtomic(path, JSON.stringify(value, null, 2) + "\n");
}

/**
 * Creates the folder a command writes into (`what`: e.g. "--out"), or says in words why it cannot: a part of its
 * path that is a file, or a nearest existing folder this user cannot write in (permissions, a read-only filesystem),
 * instead of the bare errno of a recursive mkdir (EEXIST, or ENOENT on a read-only filesystem).
 */
export async function makeFolder(dir: string, what: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
    return;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? "error";
    for (let at = dir; ; at = dirname(at)) {
      const found = await stat(at).catch(() => undefined);
      if (found && !found.isDirectory()) {
        throw new UsageError(`${what} ${dir}: ${at === dir ? "it is a file, not a folder" : `${at} is a file, not a folder`}; choose a folder path for ${what}`);
      }
      if (found) {
        // access() names the reason: EROFS for a read-only filesystem, EACCES for permissions.
        const denied = await access(at, constants.W_OK).then(() => undefined, (e: NodeJS.ErrnoException) => e.code ?? "EACCES");
        const reason = (c: string) => (c === "EROFS" ? "a read-only filesystem" : c === "EACCES" || c === "EPERM" ? "permission denied" : c);
        const why = denied || code === "EROFS" ? `cannot write in ${at} (${reason(code === "EROFS" ? code : denied!)})` : `cannot create it in ${at} (${code})`;
        throw new UsageError(`${what} ${dir}: ${why}; choose a writable ${what}`);
      }
      if (dirname(at) === at) throw new UsageError(`${what} ${dir}: cannot create it (${code}); choose another ${what}`);
    }
  }
}
