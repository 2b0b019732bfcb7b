#!/usr/bin/env bash
# ChuXin-1.6B at long context on one GPU, in one device call (issue 35); predictions written before it ran are in
# bench/results/2026-12-06-cpu-s20/long-context-gpu-predictions.md. Builds the two GPU programs it needs, then:
#   1. whole training steps at 32,768 tokens (one document the whole row), without recomputation (predicted not to
#      fit an H100) and with it: tokens/s and MFU;
#   2. the same at 131,072 with recomputation (one timed step after the warm-up: a step is about a minute);
#   3. the longest context the GPU holds at micro-batch 1, predicted from the activation plan, and one recomputed
#      step at that length;
#   4. the fused attention alone at rows of 32,768 and 131,072 tokens, one document each: forward and backward TFLOP/s.
# Run from the repository root: run(command="bash bench/long-context-gpu.sh", timeout_s=600). Logs go to $OUT (or /tmp).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp}"
export PATH="$PATH:/usr/local/cuda/bin"
nvcc="$(command -v nvcc)" || { echo "FAIL no nvcc on PATH or in /usr/local/cuda/bin"; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
t0=$(date +%s)
cmake -S native -B native/build-gpu -DCMAKE_BUILD_TYPE=Release -DCHUXIN_CUDA=ON -DCHUXIN_TESTS=ON -DCMAKE_CUDA_COMPILER="$nvcc" \
  -DCHUXIN_CUDA_GENCODE="-gencode arch=compute_90a,code=sm_90a" > "$out/long-gpu-cmake.log" 2>&1 || { tail -30 "$out/long-gpu-cmake.log"; exit 1; }
cmake --build native/build-gpu --target chuxin_gpu_throughput chuxin_attention_bench -j 16 > "$out/long-gpu-build.log" 2>&1 ||
  { grep -E "error" -A3 "$out/long-gpu-build.log" | head -60; exit 1; }
echo "built in $(( $(date +%s) - t0 )) s"
bin=native/build-gpu/chuxin_gpu_throughput
status=0
step() { timeout "$1" "$bin" --rows full --no-profile --accumulate 1 "${@:2}" 2>&1 | grep -v "^lengths of" | tee -a "$out/long-gpu-steps.log"; }
step 150 --context 32768 --micro-batches 1 --recompute-micro-batches 1 --steps 2 || status=1
step 240 --context 131072 --micro-batches "" --recompute-micro-batches 1 --steps 1 || status=1
timeout 120 "$bin" --no-profile --micro-batches "" --largest 2>&1 | grep -E "^longest|holds|FAIL" | tee "$out/long-gpu-largest.log" || status=1
for t in 32768 131072; do
  timeout 60 native/build-gpu/chuxin_attention_bench --tokens "$t" --lengths "$t" 2>&1 | tee -a "$out/long-gpu-attention.log" || status=1
done
echo "done in $(( $(date +%s) - t0 )) s"
exit $status
