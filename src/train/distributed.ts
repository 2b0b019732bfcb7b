/**
 * Where this process stands in a data-parallel run: its rank in the world, read from the variables the cluster's
 * launcher sets (torchrun's RANK / WORLD_SIZE / LOCAL_RANK / LOCAL_WORLD_SIZE / MASTER_ADDR / MASTER_PORT, or
 * Slurm's SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID / SLURM_NTASKS_PER_NODE and the first host of
 * SLURM_JOB_NODELIST), and the group it trains with once joined.
 */
import { loadAddon, native, type Communicator, type Topology } from "../native/addon.ts";
import { RuntimeFailure, UsageError } from "../util/errors.ts";
import { freePort } from "../util/free-port.ts";

export interface World {
  rank: number;
  world: number;
  localRank: number;
  localWorld: number;
  masterAddr: string;
  masterPort: number;
  /** which variables gave it */
  launcher: "single" | "torchrun" | "slurm";
}

export const SINGLE: World = { rank: 0, world: 1, localRank: 0, localWorld: 1, masterAddr: "127.0.0.1", masterPort: 29500, launcher: "single" };

function integer(env: NodeJS.ProcessEnv, name: string, min: number): number {
  const raw = env[name];
  if (raw === undefined || !/^\d+$/.test(raw.trim()) || Number(raw) < min) throw new UsageError(`${name}=${raw ?? ""} must be an integer ≥ ${min}`);
  return Number(raw);
}

/**
 * The first host of a Slurm node list: "gpu[003-007,012],login1" → "gpu003" (a range keeps its zero padding).
 */
export function firstSlurmHost(nodelist: string): string {
  const m = nodelist.trim().match(/^([^,[\]]+)(?:\[([^\]]+)\])?/);
  if (!m) throw new UsageError(`SLURM_JOB_NODELIST=${nodelist}: not a Slurm node list`);
  if (!m[2]) return m[1]!;
  const first = m[2].split(",")[0]!.split("-")[0]!;
  return m[1]! + first;
}

/** The world this process is in; one rank when no launcher variables are set. */
export function worldFromEnv(env: NodeJS.ProcessEnv): World {
  if (env.WORLD_SIZE !== undefined || env.RANK !== undefined) {
    const world = integer(env, "WORLD_SIZE", 1);
    const rank = integer(env, "RANK", 0);
    if (rank >= world) throw new UsageError(`RANK=${rank} is not below WORLD_SIZE=${world}`);
    const localWorld = env.LOCAL_WORLD_SIZE !== undefined ? integer(env, "LOCAL_WORLD_SIZE", 1) : world;
    const localRank = env.LOCAL_RANK !== undefined ? integer(env, "LOCAL_RANK", 0) : rank % localWorld;
    if (world > 1 && env.MASTER_ADDR === undefined) throw new UsageError("WORLD_SIZE > 1 needs MASTER_ADDR (rank 0's host) and MASTER_PORT");
    const masterPort = env.MASTER_PORT !== undefined ? integer(env, "MASTER_PORT", 1) : 29500;
    return { rank, world, localRank, localWorld, masterAddr: env.MASTER_ADDR ?? "127.0.0.1", masterPort, launcher: "torchrun" };
  }
  if (env.SLURM_PROCID !== undefined && env.SLURM_NTASKS !== undefined) {
    const world = integer(env, "SLURM_NTASKS", 1);
    const rank = integer(env, "SLURM_PROCID", 0);
    // "8(x2)" or "8": tasks on this node.
    const perNode = Number((env.SLURM_NTASKS_PER_NODE ?? env.SLURM_TASKS_PER_NODE ?? String(world)).match(/^\d+/)?.[0] ?? world);
    const localRank = env.SLURM_LOCALID !== undefined ? integer(env, "SLURM_LOCALID", 0) : rank % perNode;
    const masterAddr = env.MASTER_ADDR ?? (env.SLURM_JOB_NODELIST ? firstSlurmHost(env.SLURM_JOB_NODELIST) : "127.0.0.1");
    const masterPort = env.MASTER_PORT !== undefined ? integer(env, "MASTER_PORT", 1) : 29500;
    return { rank, world, localRank, localWorld: perNode, masterAddr, masterPort, launcher: "slurm" };
  }
  return SINGLE;
}

export type Collectives = "auto" | "gloo" | "nccl";

/** The library that reduces a model's gradients on `device`: NCCL reduces GPU memory, gloo host memory. */
export function collectiveLibrary(collectives: Collectives, device: "cpu" | "cuda"): "gloo" | "nccl" {
  const library = collectives === "auto" ? (device === "cuda" ? "nccl" : "gloo") : collectives;
  if (library === "nccl" && device === "cpu") throw new UsageError("--collectives nccl reduces GPU memory, and --device is cpu: use gloo (or auto)");
  if (library === "gloo" && device === "cuda") throw new UsageError("--collectives gloo reduces host memory, and the model's gradients are on the GPU (--device cuda): use nccl (or auto)");
  return library;
}

/**
 * The CUDA ordinal of this rank's GPU, one GPU per rank, given how many the process sees. A launcher either shows
 * every rank all of its node's GPUs (torchrun, srun without binding): the rank takes its local index; or binds
 * one to each rank (srun --gpus-per-task=1, a CUDA_VISIBLE_DEVICES per rank): the rank takes the one it sees.
 * Anything between would put two ranks on one GPU, which NCCL refuses, so it is refused here with the fix.
 */
export function localDevice(world: World, visible: number): number {
  if (world.world === 1) return 0;
  if (visible <= 0 || visible >= world.localWorld) return world.localRank;  // none visible: the backend says why
  if (visible === 1) return 0;
  throw new UsageError(
    `rank ${world.rank} is one of ${world.localWorld} ranks on its node (LOCAL_WORLD_SIZE) and sees ${visible} GPUs` +
      `${process.env.CUDA_VISIBLE_DEVICES !== undefined ? ` (CUDA_VISIBLE_DEVICES=${process.env.CUDA_VISIBLE_DEVICES})` : ""}: ` +
      `each rank needs a GPU of its own; start one rank per GPU (--nproc-per-node ${visible}), or let the launcher show each rank all of the node's GPUs or exactly one`,
  );
}

/** The ranks of a run, joined: host-value collectives the trainer needs besides the model's own. */
export class RankGroup {
  private constructor(
    readonly world: World,
    readonly comm: Communicator | undefined,
    /** the CUDA ordinal of this rank's GPU (localDevice) */
    private readonly cudaIndex = 0,
  ) {
    this.topology = comm ? comm.topology() : loadAddon().topology(world.world, world.rank, 1);
  }

  /**
   * Joins the other ranks through the collective library `collectives` names (auto: NCCL for a model on a GPU,
   * gloo on the CPU). One rank joins nobody unless a library is named: then the run takes the data-parallel path
   * on its own, which checks that path (and measures its cost) on a single device.
   */
  static async join(world: World, timeoutS: number, collectives: Collectives = "auto", device: "cpu" | "cuda" = "cpu"): Promise<RankGroup> {
    const library = collectiveLibrary(collectives, device);
    if (world.world === 1 && collectives === "auto") return new RankGroup(world, undefined);
    const cudaDevice = device === "cuda" ? localDevice(world, loadAddon().cudaDeviceCount()) : -1;
    // A rank alone serves its own rendezvous: on a free port, unless a launcher named one.
    const masterPort = world.launcher === "single" ? await freePort() : world.masterPort;
    const comm = await native(`rank ${world.rank} of ${world.world}`, () =>
      loadAddon().joinCommunicator({
        library,
        rank: world.rank,
        world: world.world,
        masterAddr: world.masterAddr,
        masterPort,
        timeoutMs: timeoutS * 1000,
        device: cudaDevice,
      }),
    );
    return new RankGroup(world, comm, Math.max(cudaDevice, 0));
  }

  /** Whether steps take the data-parallel path (a communicator is joined): several ranks, or one under --collectives. */
  get parallel(): boolean {
    return this.comm !== undefined;
  }

  /** The addon's device name for this rank's model: the GPU its communicator was given when there are several ranks. */
  modelDevice(device: "cpu" | "cuda"): string {
    return device === "cuda" && this.world.world > 1 ? `cuda:${this.cudaIndex}` : device;
  }

  /** The world's shape: rings of context parallelism times data parallelism. The native side owns the arithmetic
   * (comm/topology.h): the communicator's, or for one process without one, the addon's answer. */
  topology: Topology;

  /**
   * Shapes the world into rings of `ringSize` adjacent ranks that share each sequence (context parallelism), data
   * parallelism over the rings. Refused, with the fix, when the ring size does not divide the ranks.
   */
  setContextParallel(ringSize: number): void {
    try {
      if (this.comm) {
        this.comm.contextParallel(ringSize);
        this.topology = this.comm.topology();
      } else {
        this.topology = loadAddon().topology(this.world.world, this.world.rank, ringSize);
      }
    } catch (error) {
      if ((error as { code?: string }).code === "CX_INVALID_ARGUMENT") throw new UsageError((error as Error).message);
      throw error;
    }
  }

  /** Ranks per ring (1 without context parallelism), this rank's place in its ring, and its ring's data-parallel share. */
  get contextParallel(): number {
    return this.topology.ringSize;
  }
  get ringIndex(): number {
    return this.topology.ringIndex;
  }
  get dataRank(): number {
    return this.topology.dataRank;
  }
  get dataRanks(): number {
    return this.topology.dataRanks;
  }

  get rank(): number {
    return this.world.rank;
  }
  get size(): number {
    return this.world.world;
  }
  get isRoot(): boolean {
    return this.world.rank === 0;
  }

  /** Sums over the ranks, in double; `what` names the sum in a failure. */
  async sum(values: number[], what = "summing over the ranks"): Promise<number[]> {
    if (!this.comm) return values;
    const comm = this.comm;
    return Array.from(await native(`${what} (another rank stopped or died; its own message says why)`, () => comm.allReduce(Float64Array.from(values))));
  }

  /**
   * Rank 0's value on every rank (as JSON). Rank 0 passes a thunk; when it throws, every rank fails with its
   * message instead of waiting for a value that will not come.
   */
  async fromRoot<T>(compute: () => Promise<T>): Promise<T> {
    if (!this.comm) return compute();
    let value: T | undefined;
    let payload = new Uint8Array(0);
    let failure: unknown;
    if (this.isRoot) {
      try {
        value = await compute();
        payload = new TextEncoder().encode(JSON.stringify({ value }));
      } catch (error) {
        failure = error;
        payload = new TextEncoder().encode(JSON.stringify({ error: (error as Error).message }));
      }
    }
    const comm = this.comm;
    const length = new Uint8Array(new Float64Array([payload.length]).buffer);
    await native(`rank ${this.rank}: waiting for rank 0`, () => comm.broadcast(length, 0));
    const bytes = this.isRoot ? payload : new Uint8Array(new Float64Array(length.buffer)[0]!);
    await native(`rank ${this.rank}: waiting for rank 0`, () => comm.broadcast(bytes, 0));
    if (this.isRoot) {
      if (failure !== undefined) throw failure;
      return value as T;
    }
    const message = JSON.parse(new TextDecoder().decode(bytes)) as { value?: T; error?: string };
    if (message.error !== undefined) throw new RuntimeFailure(`rank 0 stopped: ${message.error}`);
    return message.value as T;
  }

  dispose(): void {
    this.comm?.dispose();
  }
}
