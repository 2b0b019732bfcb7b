#!/usr/bin/env bash
# The GPU check, in one device call (about 7.5 minutes on an H200, 2026-11-26; the PyTorch peer takes half of it):
# builds the native core for sm_90a with CUDA (no Node needed), then
#   1. chuxin_gpu_check: every op against the CPU backend (poisoned outputs), the fused attention against the
#      reference CUDA kernels, the whole model's loss and gradients for both CUDA backends, determinism, recomputation and
#      the tiny model's loss curve on the sample shard, GPU vs CPU;
#   2. chuxin_nccl_data_parallel: data parallelism over NCCL (native/bench/nccl_data_parallel.cpp): on one GPU every
#      path at world size 1 against the plain step (losses, norms, the cost in tokens/s); with several GPUs, scaling;
#   3. bench/train-gpu.sh (mix a, the sample shard's rows): chuxin_gpu_throughput (ChuXin-1.6B at sequence 4096,
#      whole training steps, tokens/s and MFU) and bench/train_gpu_torch.py (the same model, row and formulas in
#      PyTorch on the same card) → ratio.
# Run from the repository root, with the sample build's shard carried along (and the length mix's, for
# bench/train-gpu.sh --mix b in a later call; build both with `chuxin-data build recipes/<name>.yaml --out out/<name>`):
#   run(command="bash native/test/gpu-check.sh", carry=["out/sample/shard-00000.npy", "out/length-mix/shard-00000.npy"], timeout_s=540)
#   run(command="bash bench/train-gpu.sh --mix b && bash bench/train-gpu.sh --mix c out/sample/shard-00000.npy", ...)
# Logs go to $OUT (or /tmp). --no-throughput stops after step 2; --nccl-only builds and runs step 2 alone.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp}"
shard="$(pwd)/../out/sample/shard-00000.npy"
[ -f "$shard" ] || { echo "note: $shard is missing (carry it); the loss curve is skipped and the throughput row is synthetic"; shard=""; }
export PATH="$PATH:/usr/local/cuda/bin"
nvcc="$(command -v nvcc)" || { echo "FAIL no nvcc on PATH or in /usr/local/cuda/bin"; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv,noheader || true
"$nvcc" --version | tail -1
t0=$(date +%s)
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DCHUXIN_CUDA=ON -DCHUXIN_TESTS=ON -DCMAKE_CUDA_COMPILER="$nvcc" -DCHUXIN_CUDA_GENCODE="-gencode arch=compute_90a,code=sm_90a" \
  > "$out/gpu-cmake.log" 2>&1 || { tail -30 "$out/gpu-cmake.log"; exit 1; }
cmake --build build-gpu --target chuxin_gpu_check chuxin_gpu_throughput chuxin_nccl_data_parallel chuxin_attention_bench -j 16 > "$out/gpu-build.log" 2>&1 || { grep -E "error" -A3 "$out/gpu-build.log" | head -60; exit 1; }
grep -E "spill stores" "$out/gpu-build.log" | grep -v " 0 bytes spill stores" | head -5
echo "built in $(( $(date +%s) - t0 )) s"

status=0
nccl_check() {
  timeout 150 ./build-gpu/chuxin_nccl_data_parallel ${shard:+--shard "$shard"} 2>&1 | tee "$out/gpu-nccl.log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  if grep -q "NCCL (libnccl.so.2) was not found" "$out/gpu-nccl.log"; then
    lib=$(find / -xdev -name 'libnccl.so.2' 2>/dev/null | head -1)
    echo "FAIL the NCCL search missed ${lib:-every copy on this machine}"
    [ -n "$lib" ] && CHUXIN_NCCL="$lib" timeout 150 ./build-gpu/chuxin_nccl_data_parallel ${shard:+--shard "$shard"} 2>&1 | tee "$out/gpu-nccl.log"
  fi
}
if [ "${1:-}" = "--nccl-only" ]; then
  nccl_check
  exit $status
fi
# Bounded, so a hung kernel cannot take the whole call; a crash (signal or timeout) gets 60 s of the check again
# under compute-sanitizer's memcheck, without the shard (it runs on Firecracker machines, not on gVisor), before
# the throughput runs anyway.
timeout 200 ./build-gpu/chuxin_gpu_check ${shard:+"$shard"} 2>&1 | tee "$out/gpu-check.log"
rc=${PIPESTATUS[0]}
[ "$rc" -ne 0 ] && status=1
if [ "$rc" -gt 1 ]; then
  echo "chuxin_gpu_check ended with status $rc (crash or timeout); memcheck for 60 s:"
  timeout 60 compute-sanitizer --tool memcheck --print-limit 20 ./build-gpu/chuxin_gpu_check > "$out/gpu-memcheck.log" 2>&1
  grep -m 20 -E "Invalid|Error|FAIL|at 0x" "$out/gpu-memcheck.log"
fi
if grep -q "was not found; looked in" "$out/gpu-check.log"; then
  # Our search missed the library (a bug to fix); find it the slow way so the rest of the call is not wasted.
  lib=$(find / -xdev -name 'libcublasLt.so.1[23]' 2>/dev/null | head -1)
  echo "FAIL the cuBLASLt search missed ${lib:-every copy on this machine}"
  [ -n "$lib" ] && export CHUXIN_CUBLASLT="$lib" && ./build-gpu/chuxin_gpu_check ${shard:+"$shard"} 2>&1 | tee "$out/gpu-check.log"
fi
nccl_check
[ "${1:-}" = "--no-throughput" ] && exit $status
bash ../bench/train-gpu.sh ${shard:+"$shard"} || status=1
grep -h -E "passed|ours best|costs .* of tokens/s|over NCCL" "$out/gpu-check.log" "$out/gpu-nccl.log" "$out/gpu-throughput-a.log" 2>/dev/null  # the ratio is printed just above
exit $status
