/** What a release is made of: files with the ids the Hub compares (sha256 for LFS, the git blob id otherwise). */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";

export interface ReleaseFile {
  /** path in the repo */
  path: string;
  /** a file on disk, or the bytes (cards, generated files) */
  source: string | Uint8Array;
  size: number;
  sha256: string;
  /** git blob sha1: what the Hub lists for a file kept in git */
  gitOid: string;
}

/** A branch's worth of files, its card (committed last), and the commit title. */
export interface ReleaseBranch {
  branch: string;
  files: ReleaseFile[];
  card: ReleaseFile;
  title: string;
}

export async function fileEntry(path: string, source: string): Promise<ReleaseFile> {
  const size = (await stat(source)).size;
  const sha = createHash("sha256");
  const git = createHash("sha1").update(`blob ${size}\0`);
  for await (const chunk of createReadStream(source)) {
    sha.update(chunk as Buffer);
    git.update(chunk as Buffer);
  }
  return { path, source, size, sha256: sha.digest("hex"), gitOid: git.digest("hex") };
}

export function bytesEntry(path: string, content: string | Uint8Array): ReleaseFile {
  const bytes = typeof content === "string" ? new TextEncoder().encode(content) : content;
  return {
    path,
    source: bytes,
    size: bytes.length,
    sha256: createHash("sha256").update(bytes).digest("hex"),
    gitOid: createHash("sha1").update(`blob ${bytes.length}\0`).update(bytes).digest("hex"),
  };
}

/** 41,943,040,000 → "42B"; the unit that leaves at least 1. */
export function tokensLabel(tokens: number): string {
  for (const [unit, size] of [["T", 1e12], ["B", 1e9], ["M", 1e6], ["K", 1e3]] as const) {
    if (tokens >= size) return `${Math.round(tokens / size)}${unit}`;
  }
  return String(tokens);
}

/** An intermediate checkpoint's branch, as OLMo and Pythia name them: step-0010000-tokens-41B. */
export function checkpointBranch(step: number, tokens: number): string {
  return `step-${String(step).padStart(7, "0")}-tokens-${tokensLabel(tokens)}`;
}
