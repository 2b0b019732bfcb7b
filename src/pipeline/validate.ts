/**
 * `validate RECIPE`: what can be checked without building, offline: the recipe itself (loadRecipe), each local
 * source's globs against the disk, and its text column against the first file's fields. Hub sources are listed as
 * not checked (a build lists them); nothing is downloaded or written.
 */
import { dirname } from "node:path";
import { loadRecipe, placed, RecipeFieldError } from "../recipe/load.ts";
import { readerFor } from "./readers/index.ts";
import { missingFieldError } from "./readers/reader.ts";
import { findLocalFiles } from "./resolve.ts";
import { parseTemplate, templateFields } from "./template.ts";

export interface Validation {
  sources: number;
  sequenceLength: number;
  /** one line per source: what was checked */
  checked: string[];
  /** one line per source that could not be checked offline, and why */
  unchecked: string[];
}

export async function validateRecipe(recipePath: string): Promise<Validation> {
  const loaded = await loadRecipe(recipePath);
  const { recipe } = loaded;
  const checked: string[] = [];
  const unchecked: string[] = [];
  try {
    for (const [i, spec] of recipe.sources.entries()) {
      if (spec.hf) {
        unchecked.push(`source '${spec.name}': ${spec.hf.repo}@${spec.hf.revision} is on the Hub; build lists its files and reads its columns`);
        continue;
      }
      const files = [...(await findLocalFiles(spec, i, dirname(loaded.path))).entries()].sort(([a], [b]) => (a < b ? -1 : 1));
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
      checked.push(`source '${spec.name}': ${files.length} local file(s); ${fields.map((f) => `'${f}'`).join(", ")} in ${firstGiven}`);
    }
  } catch (error) {
    throw placed(error, loaded);
  }
  return { sources: recipe.sources.length, sequenceLength: recipe.sequence_length, checked, unchecked };
}
