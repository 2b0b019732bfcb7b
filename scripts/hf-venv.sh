#!/usr/bin/env bash
# Makes .venv-hf: a Python with torch (CPU), transformers, safetensors and pyarrow, for the tests that load a checkpoint in
# the Hugging Face stack (test/e2e/hf-interop.test.ts). With no network beyond the npm registry and Debian, pip
# installs from the indexes and wheel folders pip's config names on this machine, given as --index-url so pip
# does not wait on the unreachable default index. Does nothing when .venv-hf already imports them.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-hf
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import torch, transformers, safetensors, pyarrow" 2>/dev/null; then exit 0; fi
command -v python3 >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends python3 >/dev/null; }
python3 -m venv "$venv" 2>/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends python3-venv >/dev/null && python3 -m venv "$venv"; }
read -r -a indexes <<<"$(pip config get global.extra-index-url 2>/dev/null || pip3 config get global.extra-index-url 2>/dev/null || true)"
links="$(pip config get global.find-links 2>/dev/null || true)"
args=()
if [ "${#indexes[@]}" -gt 0 ]; then
  args+=(--index-url "${indexes[0]}")
  for url in "${indexes[@]:1}"; do args+=(--extra-index-url "$url"); done
fi
[ -n "$links" ] && args+=(--find-links "$links")
"$venv/bin/pip" install -q --disable-pip-version-check "${args[@]}" torch transformers safetensors pyarrow 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
"$venv/bin/python" -c "import torch, transformers, safetensors, pyarrow; print(f'.venv-hf: torch {torch.__version__}, transformers {transformers.__version__}')"
