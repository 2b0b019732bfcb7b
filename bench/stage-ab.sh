#!/usr/bin/env bash
# Two revisions' stages on one corpus, back to back, in the same run (a stage's ratio, not a timed test): for each
# NAME=TREE (a checkout with dist/ built, e.g. a `git worktree` of another revision), builds DIR/recipe.yaml (a corpus
# bench/build-memory.sh or build-scale.sh made) into DIR/out with --json and prints the seconds of tokenize, sample and
# pack, and the manifest's sha256 (every revision must write the same bytes). One --out is shared, so the token
# chunks are reused; FRESH=1 deletes them before each build, so tokenize runs in full.
#   [FRESH=1] bash bench/stage-ab.sh DIR [--memory 1GB] -- old=/tmp/wt new=. old=/tmp/wt new=.
set -euo pipefail
dir=$1
shift
flags=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do flags+=("$1"); shift; done
[ $# -gt 0 ] && shift
[ "${#flags[@]}" -gt 0 ] || flags=(--memory 1GB)
[ $# -gt 0 ] || { echo "usage: [FRESH=1] bash bench/stage-ab.sh DIR [build flags] -- NAME=TREE..." >&2; exit 2; }
[ -f "$dir/recipe.yaml" ] || { echo "no $dir/recipe.yaml: make the corpus with bench/build-memory.sh first" >&2; exit 2; }
seconds() { python3 -c "import json,sys
for l in open(sys.argv[1]):
    e = json.loads(l)
    if e.get('type') == 'stage_end' and e.get('stage') == sys.argv[2]: print(round(e['seconds'], 2))" "$dir/ab-events.txt" "$1"; }
for spec in "$@"; do
  name=${spec%%=*}
  tree=${spec#*=}
  [ "${FRESH:-0}" = 1 ] && rm -rf "$dir/out/.work/tokens"
  node "$tree/bin/chuxin-data.js" build "$dir/recipe.yaml" --out "$dir/out" "${flags[@]}" --json 2>/dev/null > "$dir/ab-events.txt"
  echo "$name$([ "${FRESH:-0}" = 1 ] && echo ' fresh')  tokenize $(seconds tokenize) s  sample $(seconds sample) s  pack $(seconds pack) s  manifest $(sha256sum "$dir/out/manifest.json" | cut -c1-16)"
done
