#!/usr/bin/env bash
# The whole GPU measurement in one go: bash benchmarks/gpu-run.sh OUT_DIR [--plan]
#
# For a CUDA machine with no internet: it runs from the clone as it is, with no install step
# (pip install -e . would fail offline, for want of setuptools in build isolation), the
# clone's root on PYTHONPATH and every dependency already installed (numpy, torch with CUDA,
# threadpoolctl, tqdm, matplotlib, pytest, hypothesis; scikit-learn and Triton for the peer rows).
# The stages, in order, each under its own time limit (about 8 minutes in all):
#   driver       nvidia-smi: the GPU, its driver and memory (skipped where nvidia-smi is absent)
#   versions     python -m benchmarks.machine: Python, NumPy, torch, CUDA, cuDNN, the devices
#   quick        python -m benchmarks --quick: every backend but the compiled ones (the peers stage
#                times those) on 4096 images, JSON to OUT_DIR/quick.json
#   bench-tests  the CUDA cases of benchmarks/test_bench.py, each run once
#   tests        the benchmark tests of the suite: on a GPU they check the CUDA rows too
#   peers        the default network at batch 64 on full MNIST: NumPy, scikit-learn, torch eager,
#                CUDA graph and torch.compile on the CPU and on CUDA (OUT_DIR/MACHINE.json, .md)
#   sweep        the sweep on NumPy and the eager and graph CUDA backends (OUT_DIR/MACHINE-sweep.*)
# MACHINE is the GPU's name as a slug (nvidia-h200). Everything printed also goes to
# OUT_DIR/gpu-run.log. A stage that fails or runs out of time is reported and the next one runs;
# the exit status is 1 if any stage failed, 2 if the run cannot start (no OUT_DIR, no CUDA device).
# --plan prints each stage as NAME<tab>SECONDS<tab>COMMAND and runs nothing (it needs no GPU).
# PYTHON names the interpreter (default: python3).
set -euo pipefail

PROG=gpu-run.sh
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}

usage() {
  echo "usage: bash benchmarks/gpu-run.sh OUT_DIR [--plan]" >&2
  echo "$PROG: error: $1" >&2
  exit 2
}

OUT_DIR="" PLAN=0
for arg in "$@"; do
  case $arg in
    --plan) PLAN=1 ;;
    -*) usage "unknown option $arg: the only option is --plan" ;;
    *) [[ -z $OUT_DIR ]] || usage "one OUT_DIR only, got $OUT_DIR and $arg"; OUT_DIR=$arg ;;
  esac
done
[[ -n $OUT_DIR ]] || usage "name the folder for the JSON, reports, figures and log"
[[ ! -e $OUT_DIR || -d $OUT_DIR ]] || usage "$OUT_DIR exists and is not a folder: name a folder"
[[ $OUT_DIR == /* ]] || OUT_DIR="$PWD/$OUT_DIR"  # the stages run from the root

# ------------------------------------------------------------------------------ the stages

STAGES=(driver versions quick bench-tests tests peers sweep)
# Seconds per stage, 510 in all. Estimates for a 16-core host with one GPU, with room to spare: a
# torch.compile takes 20-60 s with a cold cache (bench-tests builds torch-cuda-compiled twice).
declare -A BUDGET=([driver]=10 [versions]=20 [quick]=45 [bench-tests]=60 [tests]=140 [peers]=100 [sweep]=135)
CUDA_ROWS=(torch-cuda torch-cuda-resident torch-cuda-graph)
PEER_ROWS=(numpy sklearn torch-cpu-resident torch-cpu-compiled torch-cuda-resident torch-cuda-graph
           torch-cuda-compiled)

stage_command() {  # sets CMD to the command of stage $1, and STDOUT_FILE where stdout is data
  STDOUT_FILE=""
  case $1 in
    driver) CMD=(nvidia-smi --query-gpu=index,name,driver_version,memory.total,compute_cap --format=csv) ;;
    versions) CMD=("$PY" -m benchmarks.machine) ;;
    # shellcheck disable=SC2046  # the names split into words on purpose
    quick) CMD=("$PY" -m benchmarks --quick --backends $(quick_rows) --json --no-save)
           STDOUT_FILE=quick.json ;;
    bench-tests) CMD=("$PY" -m pytest -p no:cacheprovider -q benchmarks/test_bench.py -k cuda
                      --benchmark-disable) ;;
    tests) CMD=("$PY" -m pytest -p no:cacheprovider -q tests/test_benchmarks.py tests/test_peers.py
                tests/test_gpu_script.py) ;;
    peers) CMD=("$PY" -m benchmarks --backends "${PEER_ROWS[@]}" --runs 3 --out "$OUT_DIR") ;;
    sweep) CMD=("$PY" -m benchmarks --sweep --backends numpy "${CUDA_ROWS[@]}" --out "$OUT_DIR") ;;
  esac
}

quick_rows() {  # every backend of the runner but the compiled ones, one word each
  "$PY" -c "from benchmarks.runner import BACKENDS
print(' '.join(name for name in BACKENDS if not name.endswith('-compiled')))" 2>/dev/null || echo numpy
}

cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
if (( PLAN )); then
  for stage in "${STAGES[@]}"; do
    stage_command "$stage"
    printf '%s\t%s\t%s\n' "$stage" "${BUDGET[$stage]}" "$(printf '%q ' "${CMD[@]}" | sed 's/ $//')"
  done
  exit 0
fi

# ------------------------------------------------------------------------------ the run

if ! note=$("$PY" -c "from benchmarks.machine import cuda_note; print(cuda_note() or '')" 2>&1); then
  echo "$PROG: error: $PY cannot import torch and the benchmarks: ${note##*$'\n'}" >&2
  exit 2
fi
if [[ -n $note ]]; then
  echo "$PROG: error: no CUDA device is visible: $note; run it on a machine with an NVIDIA GPU" >&2
  exit 2
fi

mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/gpu-run.log"
: > "$LOG"
failed=()
for stage in "${STAGES[@]}"; do
  stage_command "$stage"
  budget=${BUDGET[$stage]}
  echo "=== $stage (at most $budget s): ${CMD[*]}" | tee -a "$LOG"
  if [[ $stage == driver ]] && ! command -v nvidia-smi >/dev/null; then
    echo "nvidia-smi is not on PATH: the driver's version is not recorded" | tee -a "$LOG"
    continue
  fi
  start=$SECONDS
  set +e
  if [[ -n $STDOUT_FILE ]]; then  # stdout is the stage's data; its stderr goes to the log
    timeout --kill-after=10 "$budget" "${CMD[@]}" 2>&1 >"$OUT_DIR/$STDOUT_FILE" | tee -a "$LOG"
  else
    timeout --kill-after=10 "$budget" "${CMD[@]}" 2>&1 | tee -a "$LOG"
  fi
  status=${PIPESTATUS[0]}
  set -e
  case $status in
    0) verdict="passed" ;;
    124|137) verdict="FAILED: ran out of its $budget s"; failed+=("$stage") ;;
    *) verdict="FAILED: exit status $status"; failed+=("$stage") ;;
  esac
  echo "=== $stage: $verdict after $(( SECONDS - start )) s" | tee -a "$LOG"
done

echo "=== files in $OUT_DIR:" | tee -a "$LOG"
ls -1 "$OUT_DIR" | tee -a "$LOG"
if (( ${#failed[@]} )); then
  echo "$PROG: ${#failed[@]} stage(s) failed: ${failed[*]} (see $LOG)" | tee -a "$LOG" >&2
  exit 1
fi
echo "$PROG: every stage passed" | tee -a "$LOG"
