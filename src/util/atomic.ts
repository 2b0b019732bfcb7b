import { randomBytes } from "node:crypto";
import { mkdir, open, rename, rm } from "node:fs/promises";
import { dirname } from "node:path";
import { RuntimeFailure } from "./errors.ts";

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

