#!/usr/bin/env bash
# Does a change keep the bytes? Builds the fixture and sample recipes and trains the tiny model (fp32 and bf16,
# with and without recomputation, 6 steps, checkpoints at 3 and 6) at an earlier commit and at the working tree,
# then compares every output file: shards, document indexes, manifests, MIXTURE.md, checkpoints (weights,
# optimizer state, configs) byte for byte, and metrics.jsonl without its wall-clock fields.
#   bash bench/same-bytes.sh REV      (e.g. HEAD~1); needs ../shared and a built addon; about 5 minutes on 2 cores
# The earlier commit is checked out in a temporary worktree with its own addon (built without CUDA).
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:?usage: bench/same-bytes.sh REV}
shared=${SHARED_DIR:-$(cd .. && pwd)/shared}
work=$(mktemp -d /tmp/chuxin-same-bytes-XXXXXX)
trap 'kill $hub_pid 2>/dev/null || true; git worktree remove --force "$work/before-tree" 2>/dev/null || true; rm -rf "$work"' EXIT

git worktree add --detach "$work/before-tree" "$rev" > /dev/null
ln -s "$PWD/node_modules" "$work/before-tree/node_modules"
(cd "$work/before-tree" && CHUXIN_CUDA=OFF npx cmake-js compile -d native > "$work/before-build.log" 2>&1) || { tail -20 "$work/before-build.log"; exit 1; }

port=$((20000 + RANDOM % 20000))
node --import tsx test/helpers/serve-hub.ts "$shared/hub" "$port" > "$work/hub.log" 2>&1 &
hub_pid=$!
sleep 3
export HF_ENDPOINT="http://127.0.0.1:$port" HF_HOME="$work/hf" CHUXIN_FROM_SOURCE=1

run_all() {  # tree, output folder
  local tree=$1 out=$2
  for recipe in fixtures sample; do
    (cd "$tree" && node bin/chuxin-data.js build "recipes/$recipe.yaml" --out "$out/$recipe" > /dev/null)
  done
  for precision in fp32 bf16; do
    for recompute in "" --recompute; do
      (cd "$tree" && node bin/chuxin-data.js train --data "$out/sample" --out "$out/run-$precision$recompute" --model tiny --steps 6 \
        --save-every 3 --eval-every 3 --precision "$precision" --device cpu $recompute > /dev/null)
    done
  done
}
run_all "$work/before-tree" "$work/before"
run_all "$PWD" "$work/after"

differ=0 same=0
while IFS= read -r file; do
  a="$work/before/$file" b="$work/after/$file"
  case "$file" in
    */metrics.jsonl) cmp -s <(jq -c 'del(.tokens_per_s, .time)' "$a") <(jq -c 'del(.tokens_per_s, .time)' "$b") && ok=1 || ok=0 ;;
    # Options added since REV are compared only as far as REV had them (their defaults keep the old behaviour).
    */run_config.json) cmp -s <(jq -c 'del(.out, .data)' "$a") <(jq -c --slurpfile before "$a" 'with_entries(select(.key as $k | $before[0] | has($k))) | del(.out, .data)' "$b") && ok=1 || ok=0 ;;
    */loss.svg | */.shard-hashes.json | */.work/* | */.chuxin.lock) continue ;;
    *) cmp -s "$a" "$b" && ok=1 || ok=0 ;;
  esac
  if [ "$ok" = 1 ]; then same=$((same + 1)); else differ=$((differ + 1)); echo "differs: $file"; fi
done < <(cd "$work/before" && find . -type f | sort)
echo "$rev vs working tree: $same files the same, $differ differ"
[ "$differ" = 0 ]
