#!/usr/bin/env bash
# Resident memory of a build, stage by stage: a seeded synthetic corpus (150,000 documents, 100 MB of JSONL, about
# 50 M tokens) as a local source with the shared DeepSeek tokenizer, built with --json while the process's RSS is
# sampled every 0.25 s; prints the peak and the largest RSS seen in each stage. No Hub server needed.
#   bash bench/build-memory.sh [work-dir] [build flags, e.g. --memory 256MB]
# To compare with another revision, check its src/ out in place (git show REV:path > path) and run this again.
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-$(mktemp -d)}"
shift || true
mkdir -p "$work"
tokenizer="$(cd .. && pwd)/shared/tokenizers/deepseek-llm/tokenizer.json"
[ -f "$tokenizer" ] || { echo "missing $tokenizer (../shared)"; exit 1; }
# PROSE=1: documents of sentences on several lines, with stop words, that pass the quality filters' rules. NEAR=f:
# that share of the documents are edited copies of an earlier one (planted near-duplicates, each pair named in
# near-truth.jsonl beside the corpus). RECIPE_EXTRA: recipe lines added (e.g. dedup: or filters:).
[ -f "$work/corpus.jsonl" ] || python3 - "$work/corpus.jsonl" <<'EOF'
import json, os, random, sys
random.seed(1)
words = ["".join(random.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(random.randint(2, 9))) for _ in range(20000)]
prose = os.environ.get("PROSE") == "1"
near = float(os.environ.get("NEAR", "0"))
stop = ["the", "of", "and", "to", "with", "that", "have", "be"]
def sentence():
    ws = [random.choice(stop) if random.random() < 0.3 else random.choice(words) for _ in range(random.randint(8, 14))]
    return " ".join(ws).capitalize() + "."
def prose_doc():
    return "\n".join(" ".join(sentence() for _ in range(random.randint(2, 3))) for _ in range(random.randint(4, 7)))
def edit(text, rate):
    # About `rate` of the words replaced, deleted or followed by an inserted one, line by line.
    out = []
    for line in text.split("\n"):
        kept = []
        for w in line.split(" "):
            r = random.random()
            if r < rate / 3:
                continue
            kept.append(random.choice(words) if r < 2 * rate / 3 else w)
            if r > 1 - rate / 3:
                kept.append(random.choice(words))
        out.append(" ".join(kept))
    edited = "\n".join(out)
    if edited == text:  # at least one word changed: a variant is never an exact copy
        ws = text.split(" ")
        k = random.randrange(len(ws))
        ws[k] = random.choice(words) + ws[k][-1:] if ws[k].endswith(".") else random.choice(words)
        edited = " ".join(ws)
    return edited
pool = []  # originals a variant may copy: a bounded reservoir (row, text)
truth = open(os.path.join(os.path.dirname(sys.argv[1]), "near-truth.jsonl"), "w")
with open(sys.argv[1], "w") as f:
    for i in range(int(os.environ.get("DOCS", "150000"))):
        if near > 0 and pool and random.random() < near:
            j, original = random.choice(pool)
            rate = random.choice([0.005, 0.01, 0.02, 0.3])
            text = edit(original, rate)
            truth.write(json.dumps({"row": i, "original": j, "rate": rate}) + "\n")
        else:
            text = prose_doc() if prose else " ".join(random.choice(words) for _ in range(random.randint(40, 160))) + f" {i}."
            if near > 0:
                if len(pool) < 20000:
                    pool.append((i, text))
                else:
                    pool[random.randrange(len(pool))] = (i, text)
        f.write(json.dumps({"text": text}) + "\n")
EOF
cat > "$work/recipe.yaml" <<EOF
name: memory
seed: 1
tokenizer:
  path: $tokenizer
sequence_length: 4096
max_epochs: 1
${RECIPE_EXTRA:-}
sources:
  - name: synthetic
    weight: 1
    local:
      files: ["corpus.jsonl"]
    text_column: text
EOF
rm -rf "$work/out" "$work/work-kb.txt"
node bin/chuxin-data.js build "$work/recipe.yaml" --out "$work/out" --json "$@" 2>/dev/null |
  while IFS= read -r line; do echo "$(date +%s.%N) $line"; done > "$work/events.txt" &
sleep 0.2
pid=$(pgrep -n -f "chuxin-data.js build $work/recipe.yaml")
# RSS every 0.25 s; what OUT/.work holds every 2 s (its peak is the disk a build needs beyond its output).
i=0
while kill -0 "$pid" 2>/dev/null; do
  echo "$(date +%s.%N) $(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null)"
  if [ $((i++ % 8)) -eq 0 ]; then (du -sk "$work/out/.work" 2>/dev/null || true) | cut -f1 >> "$work/work-kb.txt"; fi
  sleep 0.25
done > "$work/rss.txt"
wait
python3 - "$work" <<'EOF'
import json, sys
work = sys.argv[1]
events = []
for line in open(f"{work}/events.txt"):
    t, _, body = line.partition(" ")
    e = json.loads(body)
    if e.get("type") in ("stage_start", "stage_end"):
        events.append((float(t), e["type"], e["stage"]))
rss = [(float(t), int(k)) for t, k in (l.split() for l in open(f"{work}/rss.txt") if len(l.split()) == 2)]
print(f"peak RSS {max(k for _, k in rss) / 1024:.0f} MB over {len(rss)} samples")
work_kb = [int(l) for l in open(f"{work}/work-kb.txt") if l.strip()] if __import__("os").path.exists(f"{work}/work-kb.txt") else [0]
print(f"peak .work {max(work_kb) / 1024:.0f} MB")
starts = {s: t for t, kind, s in events if kind == "stage_start"}
for t1, kind, stage in events:
    if kind != "stage_end":
        continue
    seen = [k for t, k in rss if starts[stage] <= t <= t1]
    print(f"  {stage:9s} {t1 - starts[stage]:6.2f} s  largest RSS {max(seen) / 1024 if seen else float('nan'):6.0f} MB")
EOF
