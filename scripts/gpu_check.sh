#!/usr/bin/env bash
# The checks that need a CUDA GPU, for a machine with the project installed (`make test`'s venv, .venv/bin):
#   1. the benchmark on the GPU (kangaroo-lite bench --device cuda),
#   2. the self-draft exported with `kangaroo-lite export-draft`,
#   3. for transformers, vLLM and SGLang: greedy output with that draft equals the output without it
#      (scripts/engine_check.py), each engine reported as "ran (...)", "skipped (why)" or "failed (why)".
# vLLM and SGLang are used where the venv imports them, or from a venv of their own in build/engines/NAME;
# INSTALL_ENGINES=1 pip-installs a missing one there (their own torch pins stay out of the project's venv).
# Settings (environment): MODEL=smollm2|tiny, BIN=.venv/bin, RUN_DIR=results/gpu_check/<time>, PROMPTS=4,
# DTYPE=float32 (the engines' dtype for the comparison), PYTHON=python3 (to create the engines' venvs).
# Exit status: 0 when everything that ran passed; 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-.venv/bin}
MODEL=${MODEL:-smollm2}
RUN_DIR=${RUN_DIR:-results/gpu_check/$(date +%Y%m%d-%H%M%S)}
PROMPTS=${PROMPTS:-4}
DTYPE=${DTYPE:-float32}
PYTHON=${PYTHON:-python3}

die() {
    echo "gpu_check: $*" >&2
    exit 1
}

[[ -x $BIN/python && -x $BIN/kangaroo-lite ]] || die "no project venv at $BIN (run 'make test' first, or set BIN)"
command -v nvidia-smi >/dev/null || die "nvidia-smi is not on the PATH: this check needs a machine with an NVIDIA GPU"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || die "nvidia-smi sees no GPU"
"$BIN/python" - <<'EOF' || die "the venv's torch cannot use the GPU (a CPU build?): install a CUDA build into it"
import sys
import torch

print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, available: {torch.cuda.is_available()}")
sys.exit(0 if torch.cuda.is_available() else 1)
EOF
[[ ! -e $RUN_DIR ]] || die "$RUN_DIR already exists: set RUN_DIR to a new folder"
mkdir -p "$RUN_DIR"
echo "gpu_check: model set $MODEL, results in $RUN_DIR"

echo "== 1. benchmark on the GPU"
"$BIN/kangaroo-lite" bench --device cuda --model "$MODEL" --questions-per-subtask 4 --max-new-tokens 48 \
    --out "$RUN_DIR/bench"

echo "== 2. export the self-draft"
"$BIN/kangaroo-lite" export-draft --model "$MODEL" --out "$RUN_DIR/draft"
TARGET=$("$BIN/python" -c "from kangaroo_lite.model_sets.loading import target_dir; print(target_dir('$MODEL'))")

echo "== 3. engines: greedy output with the draft vs without"
"$BIN/python" scripts/engine_check.py prompts --model "$MODEL" --count "$PROMPTS" --out "$RUN_DIR/prompts.json"

# The python that imports engine $1: the project's venv, else build/engines/$1 (created when INSTALL_ENGINES=1).
engine_python() {
    local engine=$1 venv=build/engines/$1
    if "$BIN/python" -c "import $engine" 2>/dev/null; then
        echo "$BIN/python"
    elif [[ -x $venv/bin/python ]] && "$venv/bin/python" -c "import $engine" 2>/dev/null; then
        echo "$venv/bin/python"
    elif [[ ${INSTALL_ENGINES:-0} == 1 ]]; then
        echo "gpu_check: pip install $engine into $venv (log: $RUN_DIR/install-$engine.log)" >&2
        "$PYTHON" -m venv "$venv" && "$venv/bin/pip" install "$engine" >"$RUN_DIR/install-$engine.log" 2>&1 \
            && echo "$venv/bin/python"
    fi
}

summary=()
failed=0
for engine in transformers vllm sglang; do
    python=$(engine_python "$engine" || true)
    if [[ -z $python ]]; then
        if [[ ${INSTALL_ENGINES:-0} == 1 ]]; then
            summary+=("$engine: skipped (pip install failed: see $RUN_DIR/install-$engine.log)")
        else
            where="build/engines/$engine"
            summary+=("$engine: skipped (not in $BIN/python nor $where; INSTALL_ENGINES=1 pip-installs it in $where)")
        fi
        continue
    fi
    log=$RUN_DIR/engine-$engine.log
    echo "gpu_check: $engine with $python (log: $log)"
    "$python" scripts/engine_check.py check --engine "$engine" --target "$TARGET" --draft "$RUN_DIR/draft" \
        --prompts "$RUN_DIR/prompts.json" --dtype "$DTYPE" >"$log" 2>&1 || failed=1
    line=$(grep "^$engine: " "$log" | tail -n 1 || true)
    if [[ -z $line ]]; then
        line="$engine: failed (no report: see $log)"
        failed=1
    fi
    summary+=("$line")
done

echo "== summary ($RUN_DIR)"
printf '%s\n' "${summary[@]}" | tee "$RUN_DIR/engines.txt"
exit "$failed"
