#!/usr/bin/env bash
# The fused attention alone against PyTorch's kernels on the same shapes, in one device call (issue 16): forward
# and backward TFLOP/s at head size 64, 32 heads, rows of 16,384 tokens cut into documents of 128 to 16,384
# (native/bench/attention_bench.cpp, bench/attention_torch.py). Needs native/build-gpu from native/test/gpu-check.sh
# (it builds chuxin_attention_bench); logs to $OUT (or /tmp):
#   bash bench/attention-gpu.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp}"
bin=native/build-gpu/chuxin_attention_bench
[ -x "$bin" ] || { echo "FAIL $bin is missing: run native/test/gpu-check.sh (it builds it)"; exit 1; }
status=0
timeout 120 "$bin" 2>&1 | tee "$out/attention-ours.log" || status=1
timeout 60 "$bin" --reference --lengths 128,2048 2>&1 | tee "$out/attention-reference.log" || status=1
timeout 240 python3 bench/attention_torch.py 2>&1 | grep -v Warning | tee "$out/attention-torch.log" || status=1
exit $status
