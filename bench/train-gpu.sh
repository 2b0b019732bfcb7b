#!/usr/bin/env bash
# Training throughput on the GPU against the PyTorch peer, in the same call on the same card: ChuXin-1.6B at
# sequence 4096, 4 micro-batches per optimizer step, mean of 2 timed steps after a warm-up; the peer eager and under
# torch.compile, its best measured point taken for the ratio; MFU by the same formulas on both sides
# (native/bench/gpu_throughput.cpp says them: the document mask's attention pairs, and the published convention).
# One length mix per call (issue 16):
#   a (default): rows of the sample shard (or 300-token documents); micro-batches 1, 2, 4 (ours also 8 recomputed);
#   b: rows of the length-mix build (recipes/length-mix.yaml: fixture prose, code, Chinese), micro-batches 2, 4;
#   c: full rows, one 4096-token document each (the sample shard without its EOS), micro-batches 2, 4; the peer
#      also as SDPA with is_causal (its fastest kernel for plain causal attention).
# Needs the GPU build of native/test/gpu-check.sh (build-gpu/), which runs mix a after its checks; alone:
#   bash bench/train-gpu.sh [--mix a|b|c] [shard.npy]     (b's shard: out/length-mix/shard-00000.npy, carried)
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp}"
mix=a
if [ "${1:-}" = "--mix" ]; then mix="$2"; shift 2; fi
shard="${1:-}"
bin=native/build-gpu/chuxin_gpu_throughput
[ -x "$bin" ] || { echo "FAIL $bin is missing: run native/test/gpu-check.sh (it builds it)"; exit 1; }
rows=docs
sweep=(--micro-batches 1,2,4 --accumulate 4 --steps 2)
extra=(--recompute-micro-batches 8)
case "$mix" in
  a) ;;
  b) shard="${shard:-out/length-mix/shard-00000.npy}"; sweep=(--micro-batches 2,4 --accumulate 4 --steps 2); extra=() ;;
  c) rows=full; sweep=(--micro-batches 2,4 --accumulate 4 --steps 2); extra=() ;;
  *) echo "FAIL --mix $mix: a, b or c"; exit 2 ;;
esac
[ -z "$shard" ] || [ -f "$shard" ] || { echo "FAIL $shard is missing (carry it)"; exit 1; }
echo "mix $mix: ${shard:-synthetic rows}, rows of $rows"
status=0
log="$out/gpu-throughput-$mix.log"
timeout 150 "$bin" ${shard:+--shard "$shard"} --rows "$rows" "${sweep[@]}" "${extra[@]}" 2>&1 | tee "$log" || status=1
peer=(python3 bench/train_gpu_torch.py ${shard:+--shard "$shard"} --rows "$rows")
# The eager peer only where its sweep is the full one (mix a): it is never the peer's best.
[ "$mix" = a ] && { timeout 150 "${peer[@]}" "${sweep[@]}" 2>&1 | grep -v Warning | tee "$out/gpu-torch-$mix.log" || status=1; }
# The peer at its best: the whole model under torch.compile too (micro-batches 2 and 4, to fit the call's time).
timeout 240 "${peer[@]}" --compile --micro-batches 2,4 --accumulate 4 --steps 2 2>&1 | grep -v Warning | tee "$out/gpu-torch-compiled-$mix.log"
if [ "$mix" = c ]; then
  timeout 240 "${peer[@]}" --attention causal --compile --micro-batches 2,4 --accumulate 4 --steps 2 2>&1 | grep -v Warning |
    tee "$out/gpu-torch-causal-$mix.log"
fi
ours=$(grep -oP 'ours best: .*?\K[0-9]+(?= tokens/s)' "$log")
# The peer's best over every micro-batch line, eager or compiled: a compiled run cut short by its timeout prints
# no "torch best" line, and the ratio must not fall back to the eager peer because of that.
theirs_line=$(cat "$out"/gpu-torch*-"$mix".log "$out/gpu-torch-$mix.log" 2>/dev/null | grep -E '^torch micro-batch .* tokens/s' |
  awk '{ for (i = 1; i < NF; i++) if ($(i + 1) == "tokens/s,") print $i "\t" $0 }' | sort -n | tail -1)
theirs=${theirs_line%%$'\t'*}
if [ -n "$ours" ] && [ -n "$theirs" ]; then
  echo "torch at its best (mix $mix): ${theirs_line#*$'\t'}"
  awk -v a="$ours" -v b="$theirs" -v m="$mix" 'BEGIN { printf "mix %s: ours / torch tokens/s: %d / %d = %.2fx\n", m, a, b, a / b }'
else
  status=1
fi
exit $status
