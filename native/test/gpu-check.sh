#!/usr/bin/env bash
# The GPU check, one device call: build the native core for sm_90a with CUDA (no Node needed), run the
# per-op and whole-model parity against the CPU backend, determinism, and the ChuXin-1.6B throughput.
#   bash native/test/gpu-check.sh [--no-throughput]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp}"
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DCHUXIN_CUDA=ON > "$out/gpu-cmake.log" 2>&1
cmake --build build-gpu --target chuxin_gpu_check -j 16 2>&1 | tee "$out/gpu-build.log" | grep -E "error|registers|stack frame" | head -60 || true
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
./build-gpu/chuxin_gpu_check "$@" 2>&1 | tee "$out/gpu-check.log"
