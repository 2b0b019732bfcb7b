import { readFile } from "node:fs/promises";
import { UsageError } from "../util/errors.ts";

export interface LockedFile {
  path: string;
  size: number;
  sha256: string;
}

export interface LockedSource {
  name: string;
  hf?: { repo: string; revision: string; commit: string };
  local?: true;
  files: LockedFile[];
}

export interface LockedTokenizer {
  repo?: string;
  revision?: string;
  commit?: string;
  file: string;
  path?: string;
  size?: number;
  sha256: string;
}

export interface BuildLock {
  lock_version: 1;
  tokenizer: LockedTokenizer;
  sources: LockedSource[];
}

export async function readLock(path: string): Promise<BuildLock> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch {
    throw new UsageError(`${path}: --locked needs a lock file, and none is there; run a build without --locked first, or pass --lock PATH`);
  }
  let lock: BuildLock;
  try {
    lock = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`${path}: not valid JSON (${(error as Error).message})`);
  }
  if (lock?.lock_version !== 1 || !Array.isArray(lock.sources) || !lock.tokenizer) {
    throw new UsageError(`${path}: not a chuxin-data lock file (lock_version 1 with 'tokenizer' and 'sources')`);
  }
  return lock;
}
