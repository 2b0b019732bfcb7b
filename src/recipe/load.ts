import { readFile } from "node:fs/promises";
import { isAbsolute, resolve } from "node:path";
import { UsageError } from "../util/errors.ts";
import { sha256Hex } from "../util/hash.ts";
import { recipeSchema, type Recipe } from "./schema.ts";
import { parseYamlWith, YamlFileError, type PathKey } from "./yaml-schema.ts";

export class RecipeError extends YamlFileError {
  constructor(file: string, problems: string[]) {
    super(file, problems);
    this.name = "RecipeError";
  }
}

/**
 * A problem with one field of the recipe found after loading it (a glob that matches nothing, a text column the
 * files lack), thrown where the recipe's positions are not at hand; `placed` puts FILE:line:col before it.
 */
export class RecipeFieldError extends UsageError {
  constructor(
    readonly path: PathKey[],
    message: string,
  ) {
    super(message);
    this.name = "RecipeFieldError";
  }
}

/** A RecipeFieldError with the field's place in the recipe file; any other error as it is. */
export function placed(error: unknown, loaded: LoadedRecipe): unknown {
  return error instanceof RecipeFieldError ? new UsageError(`${loaded.at(error.path)}: ${error.message}`) : error;
}

export interface LoadedRecipe {
  recipe: Recipe;
  /** Absolute path of the recipe file; local globs resolve against its folder. */
  path: string;
  sha256: string;
  /** "FILE:line:col" of a field of the recipe (its parent where the field is absent), for errors found later */
  at(path: PathKey[]): string;
}

export function parseRecipe(text: string, file: string): Recipe {
  return parseWithPositions(text, file).recipe;
}

function parseWithPositions(text: string, file: string): { recipe: Recipe; where: (path: PathKey[]) => string } {
  const { data: recipe, where } = parseYamlWith(recipeSchema, text, file, (f, p) => new RecipeError(f, p));
  const names = new Set<string>();
  const problems: string[] = [];
  recipe.sources.forEach((source, i) => {
    if (names.has(source.name)) problems.push(`${where(["sources", i, "name"])}: sources[${i}].name: duplicate source name '${source.name}'; names must be unique`);
    names.add(source.name);
    for (const [j, preset] of (source.filters || []).entries()) {
      const on = recipe.filters[preset];
      if (on === undefined || on === false) {
        problems.push(`${where(["sources", i, "filters", j])}: sources[${i}].filters[${j}]: '${preset}' is not on in the recipe's filters; add \`${preset}: true\` under filters, or leave it out here`);
      }
    }
  });
  if (problems.length > 0) throw new RecipeError(file, problems);
  return { recipe, where };
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
  const { recipe, where } = parseWithPositions(text, file);
  return { recipe, path, sha256: sha256Hex(text), at: (at) => `${file}:${where(at)}` };
}
