/** A build folder's output files (its .work left out), and the check that two builds wrote the same bytes. */
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";

export async function outputFiles(dir: string): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  for (const name of (await readdir(dir)).sort()) if (name !== ".work") files.set(name, await readFile(join(dir, name)));
  return files;
}

/** The same file names and bytes as `want`; `what` names the build that differs. */
export function assertSameOutput(want: Map<string, Buffer>, got: Map<string, Buffer>, what: string): void {
  assert.deepEqual([...got.keys()], [...want.keys()], what);
  for (const [name, bytes] of want) assert.ok(bytes.equals(got.get(name)!), `${what}: ${name} differs`);
}
