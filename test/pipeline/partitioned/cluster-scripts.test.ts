/** The cluster files that run a merge as steps are the step table's (npm run gen:cluster writes them). */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { clusterFiles } from "../../../src/pipeline/partitioned/cluster-scripts.ts";
import { MERGE_STEP_TABLE } from "../../../src/pipeline/partitioned/merge-step-table.ts";
import { repoRoot } from "../../helpers/paths.ts";

describe("cluster scripts", () => {
  for (const [path, text] of Object.entries(clusterFiles())) {
    it(`${path} is what the step table generates (run npm run gen:cluster after changing the table)`, () => {
      assert.equal(readFileSync(join(repoRoot, path), "utf8"), text);
    });
  }

  it("the table's steps each come after steps declared before them, so one pass in order respects every dependency", () => {
    const seen = new Set<string>();
    for (const s of MERGE_STEP_TABLE) {
      for (const a of s.after) assert.ok(seen.has(a), `${s.name} runs after ${a}, which the table declares later`);
      seen.add(s.name);
    }
  });
});
