/** The communicator seam's native checks (native/test/comm_test.cpp): gloo collectives on 1–3 ranks as threads. */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { loadAddon, type CommOptions } from "../../src/native/addon.ts";
import { repoRoot } from "../helpers/paths.ts";

const program = join(repoRoot, "native", "build", "chuxin_comm_test");

describe("communicator (gloo)", () => {
  // Built only where libgloo-dev is; .ci/run installs it, so on CI a missing program is a failure.
  it("reduce-scatters, all-gathers, all-reduces, broadcasts and fails with messages, on 1, 2 and 3 ranks", { skip: !existsSync(program) && !process.env.CI && "built only with libgloo-dev" }, () => {
    const r = spawnSync(program, [String(30000 + (process.pid % 10000))], { encoding: "utf8", timeout: 120_000 });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const summary = r.stdout.match(/^(\d+) passed, (\d+) failed$/m);
    assert.ok(summary && Number(summary[1]) > 0 && summary[2] === "0", r.stdout);
    assert.match(r.stdout, /^ok +gloo: 3 ranks, 65537 elements/m);
    assert.match(r.stdout, /^ok +comm: a peer that leaves fails the collective, not hangs/m);
  });

  it("joinCommunicator takes exactly cx_comm_options' keys", async () => {
    const { joinCommunicator } = loadAddon();
    const options = { library: "gloo", rank: 0, world: 1, masterAddr: "127.0.0.1", masterPort: 1, timeoutMs: 1000 } satisfies Required<CommOptions>;
    assert.throws(() => joinCommunicator({ ...options, wrold: 2 } as CommOptions), /CommOptions: unknown key 'wrold'/);
    assert.throws(() => joinCommunicator({ ...options, rank: "0" } as unknown as CommOptions), /CommOptions\.rank must be a number/);
    await assert.rejects(joinCommunicator({ ...options, rank: 2, world: 2 }), /rank 2 is not in a world of 2/);
  });
});
