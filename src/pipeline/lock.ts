import { readFile } from "node:fs/promises";
import { z } from "zod";
import { assertSafeRelativePath } from "../hub/paths.ts";
import type { TaskLock } from "../tasks/dataset.ts";
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
  /** The benchmark datasets decontamination read (present only when the recipe decontaminates). */
  decontamination?: TaskLock[];
}

const hex = (n: number, what: string) => z.string().regex(new RegExp(`^[0-9a-f]{${n}}$`), `${what} (${n} lowercase hex digits)`);
const safePath = z.string().refine((p) => {
  try {
    assertSafeRelativePath(p, "");
    return true;
  } catch {
    return false;
  }
}, "a relative path without '..', empty or '.' segments");
const lockedFile = z.object({ path: safePath, size: z.number().int().nonnegative(), sha256: hex(64, "a sha256") });
const lockSchema = z.object({
  lock_version: z.literal(1),
  tokenizer: z.object({
    repo: z.string().optional(),
    revision: z.string().optional(),
    commit: hex(40, "a commit sha").optional(),
    file: safePath,
    path: z.string().optional(),
    size: z.number().int().nonnegative().optional(),
    sha256: hex(64, "a sha256"),
  }),
  sources: z.array(
    z.object({
      name: z.string(),
      hf: z.object({ repo: z.string(), revision: z.string(), commit: hex(40, "a commit sha") }).optional(),
      local: z.literal(true).optional(),
      files: z.array(lockedFile),
    }),
  ),
  decontamination: z
    .array(
      z.object({
        task: z.string(),
        task_sha256: hex(64, "a sha256"),
        repo: z.string(),
        revision: z.string(),
        commit: hex(40, "a commit sha"),
        files: z.array(lockedFile),
      }),
    )
    .optional(),
});

/**
 * Reads and checks a lock file. Its commits and hashes become cache paths, so each is checked for shape
 * here: a commit of `../../x` must never be joined onto the Hugging Face cache.
 */
export async function readLock(path: string): Promise<BuildLock> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch {
    throw new UsageError(`${path}: --locked needs a lock file, and none is there; run a build without --locked first, or pass --lock PATH`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`${path}: not valid JSON (${(error as Error).message})`);
  }
  if ((value as { lock_version?: unknown })?.lock_version !== 1) {
    throw new UsageError(`${path}: not a chuxin-data lock file (lock_version 1 with 'tokenizer' and 'sources')`);
  }
  const result = lockSchema.safeParse(value);
  if (!result.success) {
    const problems = result.error.issues.map((i) => `${i.path.map((k) => (typeof k === "number" ? `[${k}]` : `.${String(k)}`)).join("").slice(1)}: ${i.message}`);
    throw new UsageError(`${path}: ${problems.join("; ")}; rebuild without --locked to write a fresh lock`);
  }
  return result.data as BuildLock;
}
