/** `doctor`: what this installation can do: the addon's build (CPU kernel, CUDA and its archs, gloo), GPUs, NCCL. */
import type { Argv } from "yargs";

export function registerDoctor(y: Argv): Argv {
  return y.command(
    "doctor",
    "say what this installation was built with and can reach: the CPU kernel, CUDA (archs, GPUs), gloo, NCCL, cuBLASLt",
    (c) => c.option("json", { type: "boolean", default: false, describe: "one JSON object on stdout" }),
    async (a) => {
      const [{ loadAddon }, { TOOL_VERSION }] = await Promise.all([import("../../native/addon.ts"), import("../../util/version.ts")]);
      const addon = loadAddon();
      const built = JSON.parse(addon.buildInfo()) as { cuda: boolean; cuda_gencode: string; gloo: boolean };
      const gpus = addon.cudaDeviceCount();
      const nccl = addon.probeLibrary("nccl");
      const cublaslt = addon.probeLibrary("cublaslt");
      const archs = [...built.cuda_gencode.matchAll(/code=(sm_\w+)/g)].map((m) => m[1]!);
      const report = {
        version: TOOL_VERSION,
        node: process.version,
        cpu_kernel: addon.cpuKernel,
        cuda: { built: built.cuda, archs, gpus: Math.max(0, gpus) },
        gloo: built.gloo,
        nccl,
        cublaslt,
      };
      if (a.json) return void process.stdout.write(JSON.stringify(report) + "\n");
      const mark = (ok: boolean) => (ok ? "yes" : "no ");
      const lines = [
        `chuxin-data ${report.version} on Node ${report.node}`,
        `CPU training          yes  (GEMM kernel: ${report.cpu_kernel})`,
        `CUDA backend          ${mark(built.cuda)}  ${built.cuda ? `(compiled for ${archs.join(", ")}; ${Math.max(0, gpus)} GPU(s) visible)` : "(built without CUDA: install nvcc and reinstall, e.g. npm rebuild chuxin-data)"}`,
        `CPU ranks (gloo)      ${mark(built.gloo)}  ${built.gloo ? "" : "(install libgloo-dev and reinstall for train --nproc-per-node on CPUs)"}`,
        `NCCL (GPU ranks)      ${mark(nccl.found)}  ${nccl.found ? nccl.detail : "(loaded at run time from the GPU machine's CUDA or PyTorch: not found here)"}`,
        `cuBLASLt (GPU GEMMs)  ${mark(cublaslt.found)}  ${cublaslt.found ? cublaslt.detail : "(loaded at run time: not found here)"}`,
      ];
      process.stdout.write(lines.map((l) => l.trimEnd()).join("\n") + "\n");
    },
  );
}
