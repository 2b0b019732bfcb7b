import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { writeFileAtomic } from "../../src/util/atomic.ts";

describe("atomic writes", () => {
  it("on a full disk, names the file and the space it needed, and leaves no temp file", async (t) => {
    const dir = await mkdtemp(join(tmpdir(), "chuxin-full-"));
    try {
      try {
        // A 256 KiB tmpfs: a real ENOSPC from the kernel, no mock. Needs root (as CI and these machines run).
        execFileSync("mount", ["-t", "tmpfs", "-o", "size=256k", "tmpfs", dir], { stdio: "ignore" });
      } catch (error) {
        t.skip(`cannot mount a small tmpfs here (${(error as Error).message.split("\n")[0]})`);
        return;
      }
      try {
        const path = join(dir, "manifest.json");
        await assert.rejects(writeFileAtomic(path, Buffer.alloc(1 << 20)), /no space left on the device writing .*manifest\.json \(1\.0 MB needed for this file\); free space there/);
        assert.ok(!existsSync(path));
        assert.deepEqual(await readdir(dir), []);
      } finally {
        execFileSync("umount", [dir]);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
