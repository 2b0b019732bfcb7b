/** --device auto|cpu|cuda, resolved for the commands that run a model. */

// Loaded when a command runs, not when the CLI starts (--help stays fast).
const addon = async () => (await import("../native/addon.ts")).loadAddon();

export async function pickDevice(requested: string): Promise<"cpu" | "cuda"> {
  if (requested === "cpu" || requested === "cuda") return requested;
  // auto: the GPU when the addon has CUDA and a device answers; else the CPU.
  const native = await addon();
  if (!native.cudaCompiled) return "cpu";
  try {
    new native.Model({ nLayers: 1, hidden: 2, nHeads: 1, ffn: 1, vocab: 2, maxSeq: 1, ropeTheta: 10000, normEps: 1e-5 }, "cuda", 1).dispose();
    return "cuda";
  } catch (e) {
    // No GPU is the normal case; a GPU the backend cannot use (no cuBLASLt, say) is worth a word.
    const why = (e as Error).message;
    if (!/no usable CUDA driver or device|no CUDA device is visible/.test(why)) process.stderr.write(`note: --device auto uses the CPU: ${why}\n`);
    return "cpu";
  }
}
