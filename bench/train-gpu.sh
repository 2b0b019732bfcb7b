#!/usr/bin/env bash
# Training throughput on the GPU against the PyTorch peer, in the same call on the same card: ChuXin-1.6B at
# sequence 4096, rows from the sample shard (or 300-token documents), micro-batches of 1, 2 and 4 rows, 4
# micro-batches per optimizer step (ours also at 8 rows with recomputation), mean of 2 timed steps after a warm-up;
# the peer eager and under torch.compile, its best measured point taken for the ratio; MFU by the same formula on both sides
# (native/bench/gpu_throughput.cpp says it). Needs the GPU build of native/test/gpu-check.sh (build-gpu/), which
# runs this script after its checks; alone: bash bench/train-gpu.sh [shard.npy]
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp}"
shard="${1:-}"
bin=native/build-gpu/chuxin_gpu_throughput
[ -x "$bin" ] || { echo "FAIL $bin is missing: run native/test/gpu-check.sh (it builds it)"; exit 1; }
sweep=(--micro-batches 1,2,4 --accumulate 4 --steps 2)
status=0
# Ours also at micro-batch 8 with recomputation (a fresh model; it prints the memory that keeps).
timeout 150 "$bin" ${shard:+--shard "$shard"} "${sweep[@]}" --recompute-micro-batches 8 2>&1 | tee "$out/gpu-throughput.log" || status=1
timeout 150 python3 bench/train_gpu_torch.py ${shard:+--shard "$shard"} "${sweep[@]}" 2>&1 | grep -v Warning | tee "$out/gpu-torch.log" || status=1
# The peer at its best: the whole model under torch.compile too (micro-batches 2 and 4, to fit the call's time).
timeout 240 python3 bench/train_gpu_torch.py ${shard:+--shard "$shard"} --compile --micro-batches 2,4 --accumulate 4 --steps 2 2>&1 |
  grep -v Warning | tee "$out/gpu-torch-compiled.log"
ours=$(grep -oP 'ours best: .*?\K[0-9]+(?= tokens/s)' "$out/gpu-throughput.log")
# The peer's best over every micro-batch line, eager or compiled: a compiled run cut short by its timeout prints
# no "torch best" line, and the ratio must not fall back to the eager peer because of that.
theirs_line=$(cat "$out/gpu-torch.log" "$out/gpu-torch-compiled.log" 2>/dev/null | grep -E '^torch micro-batch .* tokens/s' |
  awk '{ for (i = 1; i < NF; i++) if ($(i + 1) == "tokens/s,") print $i "\t" $0 }' | sort -n | tail -1)
theirs=${theirs_line%%$'\t'*}
if [ -n "$ours" ] && [ -n "$theirs" ]; then
  echo "torch at its best: ${theirs_line#*$'\t'}"
  awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "ours / torch tokens/s: %d / %d = %.2fx\n", a, b, a / b }'
else
  status=1
fi
exit $status
