import { readFile } from "node:fs/promises";
import { isAbsolute, resolve } from "node:path";
import { UsageError } from "../util/errors.ts";
import { sha256Hex } from "../util/hash.ts";
import { recipeSchema, type Recipe } from "./schema.ts";
import { parseYamlWith, YamlFileError } from "./yaml-schema.ts";

export class RecipeError extends YamlFileError {
  constructor(file: string, problems: string[]) {
    super(file, problems);
    this.name = "RecipeError";
  }
}

export interface LoadedRecipe {
  recipe: Recipe;
  /** Absolute path of the recipe file; local globs resolve against its folder. */
  path: string;
  sha256: string;
}

export function parseRecipe(text: string, file: string): Recipe {
  const { data: recipe, where } = parseYamlWith(recipeSchema, text, file, (f, p) => new RecipeError(f, p));
  const names = new Set<string>();
  const problems: string[] = [];
  recipe.sources.forEach((source, i) => {
    if (names.has(source.name)) problems.push(`${where(["sources", i, "name"])}: sources[${i}].name: duplicate source name '${source.name}'; names must be unique`);
    names.add(source.name);
  });
  if (problems.length > 0) throw new RecipeError(file, problems);
  return recipe;
}

export async function loadRecipe(file: string): Promise<LoadedRecipe> {
  const path = isAbsolute(file) ? file : resolve(file);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new UsageError(`${file}: cannot read recipe (${code ?? String(error)}); check the path`);
  }
  return { recipe: parseRecipe(text, file), path, sha256: sha256Hex(text) };
}
