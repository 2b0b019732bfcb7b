// Writes the cluster files that run a merge as steps from the step table: `npm run gen:cluster`.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { clusterFiles } from "../src/pipeline/partitioned/cluster-scripts.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
for (const [path, text] of Object.entries(clusterFiles())) {
  writeFileSync(join(root, path), text);
  console.log(`wrote ${path}`);
}
