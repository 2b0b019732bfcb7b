#!/usr/bin/env bash
# What a partitioned build costs beside one machine's build of the same recipe, measured in the same run: a seeded
# synthetic corpus (bench/build-memory.sh's generator, DOCS documents) cut into FILES JSON-lines files, built once
# whole, then as PARTS partitions one after another on this machine, then merged. Prints each run's seconds and
# peak RSS, checks the merged output is byte-identical to the single build, and gives the speedup N machines would
# see at most, from what was measured: single / (slowest partition + merge). Then the same merge as dependent steps
# (--merge-step plan, a scatter per partition, PACK_JOBS gathers, finish), each run alone, and the speedup N machines
# would see with it: single / (slowest partition + plan + slowest scatter + slowest gather + finish). The plan runs
# twice: once doing the global dedup itself, then again after one dedup step per partition's hash range
# (--merge-step dedup), whose slowest joins the critical path.
#   DOCS=600000 FILES=8 PARTS=4 [PACK_JOBS=4] bash bench/build-partitions.sh [work-dir] [build flags, e.g. --memory 1GB]
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-$(mktemp -d)}"
shift || true
flags=("$@")
[ "${#flags[@]}" -gt 0 ] || flags=(--memory 1GB)
docs=${DOCS:-600000}
files=${FILES:-8}
parts=${PARTS:-4}
pack_jobs=${PACK_JOBS:-$parts}
mkdir -p "$work/data"
tokenizer="$(cd .. && pwd)/shared/tokenizers/deepseek-llm/tokenizer.json"
[ -f "$tokenizer" ] || { echo "missing $tokenizer (../shared)"; exit 1; }
[ -f "$work/data/part-0.jsonl" ] || python3 - "$work/data" "$docs" "$files" <<'PY'
import json, random, sys
out, docs, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
random.seed(1)
words = ["".join(random.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(random.randint(2, 9))) for _ in range(20000)]
handles = [open(f"{out}/part-{k}.jsonl", "w") for k in range(files)]
fresh = docs - docs // 50 - 1  # the last 2% repeat earlier documents, in other files: dedup across partitions
for i in range(docs):
    j = i if i < fresh else i - fresh
    r = random.Random(j)
    text = " ".join(r.choice(words) for _ in range(r.randint(40, 160))) + f" {j}."
    handles[i % files].write(json.dumps({"text": text}) + "\n")
PY
cat > "$work/recipe.yaml" <<EOF
name: partitions
seed: 1
tokenizer:
  path: $tokenizer
sequence_length: 4096
max_epochs: 1
sources:
  - name: synthetic
    weight: 1
    local:
      files: ["data/*.jsonl"]
EOF
# Runs one build command, printing "<seconds> <peak RSS MB>".
timed() {
  /usr/bin/time -f "%e %M" -o "$work/time.txt" node bin/chuxin-data.js "$@" > "$work/last.log" 2>&1 || { cat "$work/last.log" >&2; exit 1; }
  awk '{printf "%.2f %.0f\n", $1, $2 / 1024}' "$work/time.txt"
}
mb=$(du -cm "$work"/data/*.jsonl | tail -n 1 | cut -f1)
echo "corpus: $docs documents in $files files, $mb MB of JSON lines; ${flags[*]}; $(nproc) cores"
rm -rf "$work/single" "$work"/part-* "$work/merged" "$work/steps"
read -r single_s single_rss < <(timed build "$work/recipe.yaml" --out "$work/single" "${flags[@]}")
echo "single build        ${single_s} s  peak RSS ${single_rss} MB"
slowest=0
sum=0
dirs=()
for ((i = 0; i < parts; i++)); do
  read -r s rss < <(timed build "$work/recipe.yaml" --partition "$i/$parts" --out "$work/part-$i" "${flags[@]}")
  echo "partition $i/$parts       ${s} s  peak RSS ${rss} MB"
  slowest=$(python3 -c "print(max($slowest, $s))")
  sum=$(python3 -c "print($sum + $s)")
  dirs+=("$work/part-$i")
done
read -r merge_s merge_rss < <(timed build "$work/recipe.yaml" --merge "${dirs[@]}" --out "$work/merged" "${flags[@]}")
echo "merge               ${merge_s} s  peak RSS ${merge_rss} MB"
same=identical
for f in "$work"/single/*; do cmp -s "$f" "$work/merged/$(basename "$f")" || same="DIFFERENT ($(basename "$f"))"; done
echo "merged output vs single build: $same"
step() { timed build "$work/recipe.yaml" --merge "${dirs[@]}" --out "$work/steps" "${flags[@]}" --merge-step "$@"; }
read -r plan_alone_s plan_alone_rss < <(step plan --pack-jobs "$pack_jobs")
echo "merge step plan     ${plan_alone_s} s  peak RSS ${plan_alone_rss} MB  ($pack_jobs pack jobs; the global dedup in this job)"
# Runs STEP --index k for k in 0..COUNT-1, one after another, and prints the slowest's seconds.
slowest_of() {
  local name=$1 count=$2 max=0 k s rss
  for ((k = 0; k < count; k++)); do
    read -r s rss < <(step "$name" --index "$k")
    printf 'merge step %-7s %d %s s  peak RSS %s MB\n' "$name" "$k" "$s" "$rss" >&2
    max=$(python3 -c "print(max($max, $s))")
  done
  echo "$max"
}
dedup_max=$(slowest_of dedup "$parts")
read -r plan_s plan_rss < <(step plan --pack-jobs "$pack_jobs")
echo "merge step plan     ${plan_s} s  peak RSS ${plan_rss} MB  (after the dedup steps)"
scatter_max=$(slowest_of scatter "$parts")
gather_max=$(slowest_of gather "$pack_jobs")
read -r finish_s finish_rss < <(step finish)
echo "merge step finish   ${finish_s} s  peak RSS ${finish_rss} MB"
same=identical
for f in "$work"/single/*; do cmp -s "$f" "$work/steps/$(basename "$f")" || same="DIFFERENT ($(basename "$f"))"; done
echo "merged-as-steps output vs single build: $same"
python3 - "$single_s" "$sum" "$slowest" "$merge_s" "$parts" "$plan_s" "$scatter_max" "$gather_max" "$finish_s" "$plan_alone_s" "$dedup_max" <<'PY'
import sys
single, total, slowest, merge, parts, plan, scatter, gather, finish, plan_alone, dedup = map(float, sys.argv[1:])
print(f"partitions in all {total:.2f} s ({total / single:.2f}x the single build's work); merge {merge:.2f} s = {100 * merge / single:.0f}% of the single build")
print(f"on {parts:.0f} machines at once: {slowest + merge:.2f} s, {single / (slowest + merge):.2f}x faster than one machine (measured parts; the Hub's download time not included)")
alone = plan_alone + scatter + gather + finish
print(f"merge as steps, critical path: plan {plan_alone:.2f} + slowest scatter {scatter:.2f} + slowest gather {gather:.2f} + finish {finish:.2f} = {alone:.2f} s (one-job merge {merge:.2f} s)")
print(f"on {parts:.0f} machines with the merge as steps: {slowest + alone:.2f} s, {single / (slowest + alone):.2f}x faster than one machine")
steps = dedup + plan + scatter + gather + finish
print(f"with dedup steps, critical path: slowest dedup {dedup:.2f} + plan {plan:.2f} + {scatter:.2f} + {gather:.2f} + {finish:.2f} = {steps:.2f} s")
print(f"on {parts:.0f} machines with the dedup steps too: {slowest + steps:.2f} s, {single / (slowest + steps):.2f}x faster than one machine")
print(f"serial part (plan + finish): {100 * (plan_alone + finish) / single:.1f}% of the single build without dedup steps, {100 * (plan + finish) / single:.1f}% with them")
PY
