import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseRecipe, RecipeError } from "../../src/recipe/load.ts";
import { recipeJsonSchema } from "../../src/recipe/schema.ts";
import { closest } from "../../src/recipe/suggest.ts";

function errorOf(text: string): RecipeError {
  try {
    parseRecipe(text, "r.yaml");
  } catch (error) {
    assert.ok(error instanceof RecipeError, String(error));
    return error;
  }
  assert.fail("expected a RecipeError");
}

const base = `name: t
sources:
  - name: a
    weight: 1
    hf: { repo: openai/gsm8k, files: ["main/*.parquet"] }
`;

describe("recipe loading", () => {
  it("fills defaults for a minimal recipe", () => {
    const r = parseRecipe(base, "r.yaml");
    assert.equal(r.sequence_length, 4096);
    assert.equal(r.max_epochs, 4);
    assert.equal(r.seed, 0);
    assert.equal(r.sources[0]!.hf!.revision, "main");
    assert.equal(r.dedup.normalization, "nfc_trim");
  });

  it("names file, line, column, field and the closest key for a typo", () => {
    const e = errorOf(base.replace("    weight: 1", "    weigth: 1"));
    assert.match(e.message, /r\.yaml:4:5: sources\[0\]\.weigth: unknown key 'weigth' — did you mean 'weight'\?/);
    assert.match(e.message, /r\.yaml:3:5: sources\[0\]\.weight: missing required field/);
    assert.equal(e.exitCode, 2);
  });

  it("points at a bad value", () => {
    const e = errorOf(base.replace("weight: 1", "weight: -2"));
    assert.match(e.message, /r\.yaml:4:13: sources\[0\]\.weight: .*>0/);
    const t = errorOf(base + "sequence_length: lots\n");
    assert.match(t.message, /r\.yaml:6:18: sequence_length: expected number/);
  });

  it("reports YAML syntax errors with a position", () => {
    assert.match(errorOf("name: x\nsources: [\n").message, /^r\.yaml:\d+:\d+: YAML syntax error/);
  });

  it("requires exactly one of hf and local, and unique names", () => {
    assert.match(errorOf(base.replace(/    hf:.*\n/, "")).message, /give exactly one of 'hf' or 'local'/);
    const twice = base + `  - name: a\n    weight: 1\n    local: { files: ["x.jsonl"] }\n`;
    assert.match(errorOf(twice).message, /r\.yaml:6:11: sources\[1\]\.name: duplicate source name 'a'/);
  });

  it("refuses repo ids that are paths", () => {
    assert.match(errorOf(base.replace("openai/gsm8k", "../../etc")).message, /hf\.repo: a Hub repo id/);
  });

  it("exports a JSON Schema editors can use", () => {
    const schema = recipeJsonSchema() as { properties: Record<string, unknown>; required: string[] };
    assert.ok(schema.properties.sources);
    assert.deepEqual(schema.required.sort(), ["name", "sources"]);
  });

  it("suggests only close keys", () => {
    assert.equal(closest("text_colum", ["text_column", "text_template"]), "text_column");
    assert.equal(closest("zzzzzz", ["weight", "name"]), undefined);
  });
});
