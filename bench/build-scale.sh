#!/usr/bin/env bash
# A build's time, memory and disk as the corpus grows (issue 17's measure): seeded synthetic corpora of 0.1, 0.4 and
# 1.6 GB of JSON lines (SIZES to change; 1.5 M documents per GB, the generator of bench/build-memory.sh), each built
# with the same --memory budget. Prints per stage: seconds, MB/s of corpus text, the largest RSS seen, and at the end
# the peak RSS, the most OUT/.work held during the build and what it holds after. Each size is its own build (no
# cache shared between them).
# NEAR_DEDUP=1 (issue 37): prose documents (PROSE=1) of which 10% are planted near-duplicates (NEAR=0.1), built twice
# per size, without and with MinHash (verify_jaccard 0.8) and the four quality filters; prints both, the time the
# two add (the builds' difference, and the time of the stages only they run), and recall and precision against the
# planted pairs (bench/near-dups-eval.ts).
#   bash bench/build-scale.sh [work-dir] [--memory 1GB]     SIZES="0.1 0.4 1.6" by default
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-$(mktemp -d)}"
shift || true
budget=("$@")
[ "${#budget[@]}" -gt 0 ] || budget=(--memory 1GB)
features=$'dedup: { minhash: { verify_jaccard: 0.8 } }\nfilters: { gopher_quality: true, gopher_repetition: true, c4: true, fineweb: true }'

# Runs one build of $dir's corpus with RECIPE_EXTRA=$2 and prints its stages; the total seconds go to $dir/$1.total.
run() {
  local label=$1 extra=$2
  local out
  out=$(RECIPE_EXTRA="$extra" DOCS=$docs bash bench/build-memory.sh "$dir" "${budget[@]}")
  local mb workmb
  mb=$(python3 -c "import os; print(os.path.getsize('$dir/corpus.jsonl') / 1e6)")
  workmb=$(du -sm "$dir/out/.work" | cut -f1)
  echo "== $size GB requested: $docs documents, $(printf '%.0f' "$mb") MB of JSON lines, ${budget[*]}${label:+, $label}"
  echo "$out" | python3 -c "
import sys
mb = float('$mb')
total = 0.0
features = 0.0  # the stages only MinHash and the filters run
for line in sys.stdin:
    parts = line.split()
    if line.startswith('peak RSS'):
        peak = line.strip()
    elif line.startswith('peak .work'):
        peak_work = line.split()[2]
    elif len(parts) >= 3 and parts[2] == 's':
        s = float(parts[1])
        total += s
        if parts[0] in ('quality', 'near-dedup'):
            features += s
        print(f'  {parts[0]:12s} {s:8.2f} s  {mb / s if s > 0 else float(\"inf\"):8.1f} MB/s  largest RSS {parts[-2]:>6s} MB')
print(f'  {peak}; .work peaked at {peak_work} MB and holds $workmb MB after the build; stages {total:.1f} s')
open('$dir/${label:-plain}.total', 'w').write(str(total))
open('$dir/${label:-plain}.features', 'w').write(str(features))
"
}

for size in ${SIZES:-0.1 0.4 1.6}; do
  docs=$(python3 -c "print(int($size * 1500000))")
  dir="$work/$size"
  mkdir -p "$dir"
  if [ "${NEAR_DEDUP:-}" = 1 ]; then
    export PROSE=1 NEAR=0.1
    run "without" ""
    run "with MinHash and filters" "$features"
    node --import tsx bench/near-dups-eval.ts "$dir"
    python3 -c "
a = float(open('$dir/without.total').read()); b = float(open('$dir/with MinHash and filters.total').read())
f = float(open('$dir/with MinHash and filters.features').read())
print(f'  MinHash and filters add {b - a:.1f} s to {a:.1f} s: {100 * (b - a) / a:.1f}% of the build')
# The difference of two builds moves with their other stages' noise (tokenize's especially); the stages only the
# features run are the steadier measure, and an upper bound: near-dedup's removals shorten tokenize and pack.
print(f'  their stages (quality, near-dedup) take {f:.1f} s: {100 * f / a:.1f}% of the build without them')"
  else
    run "" ""
  fi
done
