/**
 * `validate RECIPE`: what can be checked without building, offline: the recipe itself (loadRecipe), each local
 * source's globs against the disk, and its text column against the first file's fields; a Hub source the same way
 * when a lock names its files and the first is in the HF cache. What cannot be checked so is listed, with why;
 * nothing is downloaded or written.
 */
import { existsSync } from "node:fs";
import { dirname } from "node:path";
import type { BuildLock } from "./lock.ts";
import { loadRecipe, placed, RecipeFieldError } from "../recipe/load.ts";
import { readerFor } from "./stages/readers/index.ts";
import { missingFieldError } from "./stages/readers/reader.ts";
import { findLocalFiles } from "./local-files.ts";
import { parseTemplate, templateFields } from "../util/template.ts";

export interface Validation {
  sources: number;
  sequenceLength: number;
  /** one line per source: what was checked */
  checked: string[];
  /** one line per source that could not be checked offline, and why */
  unchecked: string[];
}

/** `lock`: the recipe's lock (a build's recipe.lock.json), which says which files each Hub source reads. */
export async function validateRecipe(recipePath: string, lock?: BuildLock): Promise<Validation> {
  const loaded = await loadRecipe(recipePath);
  const { recipe } = loaded;
  const checked: string[] = [];
  const unchecked: string[] = [];
  try {
    for (const [i, spec] of recipe.sources.entries()) {
      let files: [string, string][];
      let from = "local";
      if (spec.hf) {
        const locked = lock?.sources.find((s) => s.name === spec.name);
        const where = `source '${spec.name}': ${spec.hf.repo}@${spec.hf.revision}`;
        if (!locked?.hf || locked.files.length === 0) {
          unchecked.push(`${where}: no lock names its files (pass --lock, or build once); build lists them and reads their columns`);
          continue;
        }
        const [{ HubClient }, { hubEnv }] = await Promise.all([import("../hub/client.ts"), import("../hub/env.ts")]);
        const client = new HubClient(hubEnv());
        const cached = client.snapshotFile({ type: "dataset", id: locked.hf.repo }, locked.hf.commit, locked.files[0]!.path);
        if (!existsSync(cached)) {
          unchecked.push(`${where}: ${locked.files[0]!.path} (commit ${locked.hf.commit.slice(0, 12)}) is not in the HF cache; build downloads it and reads its columns`);
          continue;
        }
        files = locked.files.map((f, j) => [f.path, j === 0 ? cached : ""]);
        from = `locked at ${locked.hf.commit.slice(0, 12)}; the first read from the HF cache`;
      } else {
        files = [...(await findLocalFiles(spec, i, dirname(loaded.path))).entries()].sort(([a], [b]) => (a < b ? -1 : 1));
      }
      const [firstGiven, firstPath] = files[0]!;
      const fields = spec.text_template ? templateFields(parseTemplate(spec.text_template, `source '${spec.name}': text_template`)) : [spec.text_column ?? "text"];
      let reader;
      try {
        reader = readerFor(firstGiven);
      } catch (error) {
        throw new RecipeFieldError(["sources", i, "local", "files"], (error as Error).message);
      }
      const has = await reader.columns(firstPath);
      const missing = fields.find((f) => !has.includes(f));
      if (missing !== undefined) {
        throw missingFieldError(i, spec.text_template !== undefined, `source '${spec.name}': ${firstGiven}`, missing, has, reader.name === "jsonl" ? "is a field of none of its first lines; they have" : "is not a column; the file has");
      }
      checked.push(`source '${spec.name}': ${files.length} file(s) (${from}); ${fields.map((f) => `'${f}'`).join(", ")} in ${firstGiven}`);
    }
  } catch (error) {
    throw placed(error, loaded);
  }
  return { sources: recipe.sources.length, sequenceLength: recipe.sequence_length, checked, unchecked };
}
