import { readFileSync } from "node:fs";

/**
 * How many files this process may hold open (RLIMIT_NOFILE, which Node raises to the hard limit at start), read
 * from /proc/self/limits; 1024, the common default, where that cannot be read.
 */
export function openFileLimit(): number {
  try {
    const line = readFileSync("/proc/self/limits", "utf8").split("\n").find((l) => l.startsWith("Max open files"));
    const soft = line?.trim().split(/\s+/)[3];
    if (soft === "unlimited") return 1 << 20;
    const n = Number(soft);
    if (Number.isInteger(n) && n > 0) return n;
  } catch {
    // not Linux: the default below
  }
  return 1024;
}

/**
 * Files a reader of many chunk files may keep open, out of `share` of the limit (the rest is DuckDB's, the
 * tokenizer's and the shard writers'): never under 64, never over 32,768.
 */
export function openFileBudget(share = 0.5): number {
  return Math.max(64, Math.min(32768, Math.floor(openFileLimit() * share)));
}
