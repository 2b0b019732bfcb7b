/**
 * The communicator seam's native checks: gloo collectives on 1–3 ranks as threads (native/test/comm_test.cpp), and the
 * NCCL communicator under the CUDA emulation (native/test/nccl_emulated_check.cpp).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { loadAddon, type CommOptions } from "../../src/native/addon.ts";
import { repoRoot } from "../helpers/paths.ts";

const program = join(repoRoot, "native", "build", "chuxin_comm_test");
const ncclEmulated = join(repoRoot, "native", "build", "chuxin_nccl_emulated_check");

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

  // Built with gloo and the CUDA toolkit's headers (both on CI): NCCL's contract over gloo, the CUDA backend emulated.
  it("nccl under the CUDA emulation: the communicator's layouts, and a GPU model's data parallelism on 1–3 ranks", { skip: !existsSync(ncclEmulated) && !process.env.CI && "built with libgloo-dev and the CUDA headers" }, () => {
    const r = spawnSync(ncclEmulated, [String(24000 + (process.pid % 4000))], { encoding: "utf8", timeout: 240_000 });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const summary = r.stdout.match(/^(\d+) passed, (\d+) failed$/m);
    assert.ok(summary && Number(summary[1]) > 0 && summary[2] === "0", r.stdout);
    assert.match(r.stdout, /^ok +fp32, 3 rank\(s\) through NCCL, ZeRO-1, overlapped follows 1 rank/m);
    assert.match(r.stdout, /^ok +bf16, 3 rank\(s\) through NCCL, ZeRO-1, overlapped follows 1 rank/m);
    assert.match(r.stdout, /^ok +nccl: a peer that leaves fails the next collective/m);
  });

  const ncclBench = join(repoRoot, "native", "build", "chuxin_nccl_data_parallel_emulated");
  it("runs the GPU check's NCCL program's logic under the emulation (tiny model; its timings mean nothing)", { skip: !existsSync(ncclBench) && !process.env.CI && "built with libgloo-dev and the CUDA headers" }, () => {
    const r = spawnSync(ncclBench, ["--config", "tiny", "--micro-batch", "1", "--accumulate", "2", "--steps", "2", "--port", String(20000 + (process.pid % 4000))], { encoding: "utf8", timeout: 120_000 });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^1 GPU, NCCL, ZeRO-1, overlapped .* replicas identical$/m);
    assert.match(r.stdout, /^ok +world size 1 follows the plain run: .*\[ZeRO-0\]$/m);
    assert.match(r.stdout, /^data parallelism over NCCL: every check passed$/m);
  });

  it("joinCommunicator takes exactly cx_comm_options' keys", async () => {
    const { joinCommunicator } = loadAddon();
    const options = { library: "gloo", rank: 0, world: 1, masterAddr: "127.0.0.1", masterPort: 1, timeoutMs: 1000, device: -1 } satisfies Required<CommOptions>;
    assert.throws(() => joinCommunicator({ ...options, wrold: 2 } as CommOptions), /CommOptions: unknown key 'wrold'/);
    assert.throws(() => joinCommunicator({ ...options, rank: "0" } as unknown as CommOptions), /CommOptions\.rank must be a number/);
    await assert.rejects(joinCommunicator({ ...options, rank: 2, world: 2 }), /rank 2 is not in a world of 2/);
  });

  it("nccl: refused without a GPU to reduce on, and a library that is not there is named with where to get it", async () => {
    const { joinCommunicator } = loadAddon();
    const options = { library: "nccl", rank: 0, world: 1, masterAddr: "127.0.0.1", masterPort: 1, timeoutMs: 1000, device: -1 } satisfies Required<CommOptions>;
    const withoutCuda = /nccl is unavailable: this addon was built without CUDA/;
    await assert.rejects(joinCommunicator(options), (e: Error) => withoutCuda.test(e.message) || /NCCL reduces GPU memory; give the communicator the model's CUDA device/.test(e.message));
    // This test's process alone loads NCCL (each test file runs in its own), so the override is what it sees.
    process.env.CHUXIN_NCCL = "/nonexistent/libnccl.so.2";
    await assert.rejects(joinCommunicator({ ...options, device: 0 }), (e: Error) => {
      assert.ok(withoutCuda.test(e.message) || /NCCL could not be loaded from CHUXIN_NCCL \(\/nonexistent\/libnccl\.so\.2: no such file\); point it at libnccl\.so\.2/.test(e.message), e.message);
      return true;
    });
  });
});
