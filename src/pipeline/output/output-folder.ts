import { readdir, readFile, rename, rm, stat, statfs } from "node:fs/promises";
import { join } from "node:path";
import { LOCK, MANIFEST, WORK_DIR } from "../../shards/layout.ts";
import { makeFolder } from "../../util/atomic.ts";
import { UsageError } from "../../util/errors.ts";
import { LOCK_FILE, lockFolder, type FolderLock } from "../../util/folder-lock.ts";
import { shardGeometry } from "../stages/pack.ts";
import { PARTITION_FILES } from "../partitioned/partition-format.ts";

/** What a build writes into its output folder; anything else there is the user's. */
const OUTPUT_FILE = /^(?:shard-\d+\.(?:npy|docs\.parquet)|MIXTURE\.md|README\.md|tokenizer\.json)$/;
const TEMP_FILE = /\.[0-9a-f]{8}\.tmp$/;
const OWN_FILE = (name: string) =>
  OUTPUT_FILE.test(name) || TEMP_FILE.test(name) || [MANIFEST, LOCK, WORK_DIR, LOCK_FILE, ...PARTITION_FILES].includes(name);

/** The recipe a build is of: a folder holding another recipe's build is not replaced without --force. */
export interface BuildOf {
  name: string;
  path: string;
}

/** The recipe of the build already in `outDir`, from its manifest; undefined when there is none (or it is unreadable). */
async function builtRecipe(outDir: string): Promise<BuildOf | undefined> {
  try {
    const m = JSON.parse(await readFile(join(outDir, MANIFEST), "utf8")) as { recipe?: BuildOf };
    return typeof m.recipe?.name === "string" ? m.recipe : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Takes the output folder for this build: refuses one holding files the tool did not write, or the build of
 * another recipe (by its name; an edited recipe of the same name rebuilds in place), unless `force`, and locks it
 * so a second build into it waits its turn with a clear message.
 */
export async function takeOutputFolder(outDir: string, force: boolean | undefined, command: string, of?: BuildOf): Promise<FolderLock> {
  await makeFolder(outDir, "--out");
  const names = await readdir(outDir);
  const ours = names.some((n) => n === MANIFEST || n === WORK_DIR || n === LOCK || PARTITION_FILES.includes(n));
  // A README.md alone is the user's; beside a manifest, a lock or a work folder it is our dataset card.
  const foreign = names.filter((n) => !OWN_FILE(n) || (n === "README.md" && !ours));
  if (foreign.length > 0 && !force) {
    const shown = foreign.slice(0, 5).join(", ") + (foreign.length > 5 ? `, and ${foreign.length - 5} more` : "");
    throw new UsageError(
      `${outDir} holds files chuxin-data did not write (${shown}); a build replaces README.md and the shards there. ` +
        `Choose a new or empty --out, or pass --force to build into it anyway`,
    );
  }
  const there = of && !force ? await builtRecipe(outDir) : undefined;
  if (there && of && there.name !== of.name) {
    throw new UsageError(
      `${outDir} holds the build of recipe '${there.name}' (${there.path}), and this is a build of '${of.name}' (${of.path}); ` +
        `choose another --out (the default is out/${of.name}), or pass --force to replace that build`,
    );
  }
  return lockFolder(outDir, command);
}

/**
 * Moves a complete build from the staging folder into place. Until this point the previous build is
 * untouched, so a failed rebuild (the Hub gone, a typo, a kill) never costs the last good output. The
 * manifest goes first and comes back last: in between, nothing claims to be a complete build.
 */
export async function publishStaged(staging: string, outDir: string): Promise<void> {
  await rm(join(outDir, MANIFEST), { force: true });
  for (const name of await readdir(outDir)) {
    if (OUTPUT_FILE.test(name) || TEMP_FILE.test(name)) await rm(join(outDir, name), { force: true });
  }
  const staged = (await readdir(staging)).filter((n) => n !== MANIFEST).sort();
  for (const name of staged) await rename(join(staging, name), join(outDir, name));
  await rename(join(staging, MANIFEST), join(outDir, MANIFEST));
  await rm(staging, { recursive: true, force: true });
}

/** Bytes of the shards a mixture of `tokens` selected tokens packs into (headers included; the document indexes are small beside them). */
export function shardBytes(tokens: number, sequenceLength: number, maxShardBytes: number): number {
  const g = shardGeometry(tokens, sequenceLength, maxShardBytes);
  return 128 * g.shardCount + 4 * g.totalSequences * sequenceLength;
}

/** Free bytes for an unprivileged writer on the filesystem holding `path`, or undefined where it cannot be read. */
export async function freeBytes(path: string): Promise<number | undefined> {
  try {
    const s = await statfs(path);
    return s.bavail * s.bsize;
  } catch {
    return undefined;
  }
}

/** Bytes under a folder (its files, recursively). */
export async function folderBytes(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const p = join(dir, e.name);
    if (e.isDirectory()) total += await folderBytes(p);
    else if (e.isFile()) total += (await stat(p)).size;
  }
  return total;
}
