/**
 * A local source's files: its globs matched under the recipe's folder (symbolic links followed). Apart from
 * resolve.ts, so `validate` finds them without loading the Hub client or DuckDB.
 */
import { readdir, readlink, realpath, stat } from "node:fs/promises";
import { join, relative, resolve, sep } from "node:path";
import { globToRegExp } from "../hub/paths.ts";
import { RecipeFieldError } from "../recipe/load.ts";
import type { SourceSpec } from "../recipe/schema.ts";
import { closest } from "../util/did-you-mean.ts";
import { UsageError } from "../util/errors.ts";

/**
 * Every file under `dir`, following symbolic links (a linked folder is walked, once); a link whose target
 * is missing is an error naming it, not a raw ENOENT later.
 */
async function walkFiles(dir: string, where: string, seen = new Set<string>()): Promise<string[]> {
  const out: string[] = [];
  let entries;
  try {
    const real = await realpath(dir);
    if (seen.has(real)) return out; // a link cycle
    seen.add(real);
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    let isDir = e.isDirectory();
    let isFile = e.isFile();
    if (e.isSymbolicLink()) {
      const target = await stat(p).catch(() => undefined);
      if (!target) throw new UsageError(`${where}: ${p} is a symbolic link to a missing file (${await readlink(p).catch(() => "?")}); fix or remove the link`);
      isDir = target.isDirectory();
      isFile = target.isFile();
    }
    if (isDir) out.push(...(await walkFiles(p, where, seen)));
    else if (isFile) out.push(p);
  }
  return out;
}

/** The folder part of a glob before its first wildcard, so only that subtree is walked. */
function staticPrefix(glob: string): string {
  const parts = glob.split("/");
  const fixed: string[] = [];
  for (const p of parts.slice(0, -1)) {
    if (/[*?{[]/.test(p)) break;
    fixed.push(p);
  }
  return fixed.join("/");
}

/**
 * A local source's files: each glob's matches under the recipe's folder, by the path the recipe gives (relative to
 * its folder) → the file on disk. None matching is a recipe error at the source's files, naming the nearest file.
 */
export async function findLocalFiles(spec: SourceSpec, sourceIndex: number, recipeDir: string): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  const seen: string[] = [];
  for (const glob of spec.local!.files) {
    const base = resolve(recipeDir, staticPrefix(glob));
    const regex = globToRegExp(resolve(recipeDir, glob).split(sep).join("/"));
    for (const file of await walkFiles(base, `source '${spec.name}'`)) {
      const normalized = file.split(sep).join("/");
      const given = relative(recipeDir, file).split(sep).join("/");
      seen.push(given);
      if (regex.test(normalized)) found.set(given, file);
    }
  }
  if (found.size === 0) {
    const near = spec.local!.files.map((g) => closest(g, seen, Math.max(3, Math.floor(g.length / 3)))).find((f) => f !== undefined);
    throw new RecipeFieldError(
      ["sources", sourceIndex, "local", "files"],
      `source '${spec.name}': local.files ${JSON.stringify(spec.local!.files)} match no file under ${recipeDir}` +
        (near ? ` (did you mean '${near}'?)` : seen.length === 0 ? " (the folder they name has no files)" : ""),
    );
  }
  return found;
}

