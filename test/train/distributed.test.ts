/** Where a process stands in a data-parallel run, from the launcher's variables (torchrun, Slurm). */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { firstSlurmHost, localDevice, SINGLE, worldFromEnv } from "../../src/train/distributed.ts";

describe("worldFromEnv", () => {
  it("is one rank without launcher variables", () => {
    assert.deepEqual(worldFromEnv({}), SINGLE);
  });

  it("reads torchrun's variables", () => {
    const w = worldFromEnv({ RANK: "9", WORLD_SIZE: "16", LOCAL_RANK: "1", LOCAL_WORLD_SIZE: "8", MASTER_ADDR: "node0", MASTER_PORT: "29400" });
    assert.deepEqual(w, { rank: 9, world: 16, localRank: 1, localWorld: 8, masterAddr: "node0", masterPort: 29400, launcher: "torchrun" });
  });

  it("reads Slurm's, with rank 0's host the first of the job's node list", () => {
    const w = worldFromEnv({ SLURM_PROCID: "11", SLURM_NTASKS: "16", SLURM_LOCALID: "3", SLURM_NTASKS_PER_NODE: "8", SLURM_JOB_NODELIST: "gpu[007-008]" });
    assert.deepEqual(w, { rank: 11, world: 16, localRank: 3, localWorld: 8, masterAddr: "gpu007", masterPort: 29500, launcher: "slurm" });
    assert.equal(firstSlurmHost("gpu[003-007,012],login1"), "gpu003");
    assert.equal(firstSlurmHost("a1,b2"), "a1");
    assert.equal(firstSlurmHost("node12"), "node12");
  });

  it("names the variable that is wrong", () => {
    assert.throws(() => worldFromEnv({ RANK: "2", WORLD_SIZE: "2", MASTER_ADDR: "h" }), /RANK=2 is not below WORLD_SIZE=2/);
    assert.throws(() => worldFromEnv({ RANK: "x", WORLD_SIZE: "2", MASTER_ADDR: "h" }), /RANK=x must be an integer/);
    assert.throws(() => worldFromEnv({ RANK: "0", WORLD_SIZE: "2" }), /needs MASTER_ADDR/);
  });
});

describe("localDevice", () => {
  const rank = (localRank: number, localWorld: number) => ({ ...SINGLE, rank: 8 + localRank, world: 16, localRank, localWorld, launcher: "torchrun" as const });

  it("takes the local rank's GPU when a rank sees all of its node's", () => {
    assert.equal(localDevice(rank(5, 8), 8), 5);
    assert.equal(localDevice(rank(5, 8), 16), 5);
  });

  it("takes the one GPU a launcher bound to the rank (srun --gpus-per-task=1, CUDA_VISIBLE_DEVICES per rank)", () => {
    assert.equal(localDevice(rank(5, 8), 1), 0);
  });

  it("refuses two ranks on one GPU, with the fix", () => {
    assert.throws(() => localDevice(rank(5, 8), 4), /one of 8 ranks on its node \(LOCAL_WORLD_SIZE\) and sees 4 GPUs.*--nproc-per-node 4/);
  });

  it("is device 0 for a rank alone, and leaves a missing GPU to the backend's message", () => {
    assert.equal(localDevice(SINGLE, 4), 0);
    assert.equal(localDevice(rank(3, 8), 0), 3);
  });
});
