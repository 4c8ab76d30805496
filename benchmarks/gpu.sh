#!/usr/bin/env bash
# One call on a lent GPU machine (docs/performance.md, "On one GPU"), in a fixed budget
# (BUDGET seconds, default 540: a device call runs at most 600), most important first:
#   1. training benchmark: epoch cost per cell alone and batched (vmap, K = 1..64) against
#      the FP32 floor, cheapest model first; --save keeps every finished model's numbers;
#      then the grouped convolutions vmap makes of LeNet-5's and ResNet-4's layers against
#      three other ways of computing them (benchmarks/grouped_conv.py, same file);
#   2. paper-grid estimates of configs/paper.yaml and configs/extended.yaml, training costs
#      taken from step 1 (only curvature is measured again);
#   3. TF32 against strict FP32 (final accuracies of 48 LeNet-300-100 cells beside the
#      spread over seeds);
#   4. the paper grid itself for the rest of the budget: LeNet-300-100 training cells of
#      configs/paper.yaml through Snakemake and profiles/gpu, stopped at the deadline;
#      how many cells finished in how long, and their compute_seconds;
#   CURVATURE=1 adds the curvature benchmarks and the device check (measured 2026-11-26).
# Run it from the repository root on the GPU machine: `bash benchmarks/gpu.sh` (logs and
# tables in $OUT, default gpu-out/; at most 8 files, what a borrowed machine returns).
# A machine without Snakemake or PyPI: first run `bash benchmarks/gpu_carry.sh` where PyPI
# is reachable (it builds .gpu/: Snakemake's wheels and the Fashion-MNIST files) and copy
# .gpu/ along; gpu.sh installs from there. Give it 600 s.
# DEVICE=cpu rehearses every step on this machine at toy sizes (tests/test_benchmarks.py).
# --help prints this header; the script takes no arguments (settings are environment variables).
. "$(dirname "$0")/no_args.sh"
set -u
OUT=${OUT:-gpu-out}
DEVICE=${DEVICE:-cuda}
BUDGET=${BUDGET:-540}
mkdir -p "$OUT"
# The benchmarks run as modules (python -m benchmarks.NAME) and import the package; the GPU
# image has no install of it (setup.sh's editable install is this machine's), so src/ here.
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
PY=${PY:-python3}
T0=$(date +%s)
left() { echo $((BUDGET - ($(date +%s) - T0))); }
# cap WANT [RESERVE]: WANT seconds, or what is left after RESERVE if that is less (>= 1)
cap() { local l=$(($(left) - ${2:-0})); ((l < 1)) && l=1; ((${1} < l)) && echo "$1" || echo "$l"; }
step() { echo "== $1 ($(date +%T), $(left) s left)"; }
GRID_CONFIGS=configs/paper.yaml
if [ "$DEVICE" = cpu ]; then  # a rehearsal: every step, toy sizes (the CPU engine: loop)
  TRAIN_ARGS="--train-size 64 --cells 1,64 --archs lenet300100 --methods loop"
  CONV_ARGS="--cells 2 --images 4 --repeats 1"
  COST_ARGS="--train-size 64 --curvature-batch 8 --subspace-dim 4"
  TF32_ARGS="--dataset synthetic --epochs 3 --seeds 0,1 --scales 1 --variants homogeneous"
  REHEARSAL=$(mktemp --suffix .yaml)  # its own file: two rehearsals at once do not share it
  trap 'rm -f "$REHEARSAL"' EXIT
  cat > "$REHEARSAL" <<'YAML'
training: {epochs: 2, log_every: 1, train_subset: 256, test_subset: 256, batch_cells: 4, batch_wait: 1,
  lr_base: [0.1], scales: {temperature: {log10_min: 0, log10_max: 0, num: 1, refine: null}}}
YAML
  GRID_CONFIGS="$GRID_CONFIGS $REHEARSAL"
else
  TRAIN_ARGS="--cells 1,4,16,32,64 --methods vmap"
  CONV_ARGS=""
  COST_ARGS=""
  TF32_ARGS=""
fi

step "device"
if [ "$DEVICE" = cuda ]; then nvidia-smi -L; fi
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.is_available() \
and torch.cuda.get_device_name())"
if ! $PY -c "import snakemake" 2>/dev/null; then  # the GPU image has none: .gpu/whl
  $PY -m pip install -q --no-index --find-links .gpu/whl snakemake ||
    { $PY -m pip install -q --no-index --no-deps --target /tmp/site .gpu/whl/*.whl &&
      export PYTHONPATH="$PYTHONPATH:/tmp/site"; }
fi
$PY -m snakemake --version || echo "NO SNAKEMAKE: steps 2 and 4 will fail"
FMNIST=/usr/share/datasets/fashion-mnist  # config.yaml's first data mirror
if [ ! -d "$FMNIST" ] && [ -d .gpu/fashion-mnist ]; then
  mkdir -p "$FMNIST" && cp .gpu/fashion-mnist/* "$FMNIST"/
fi

step "1. training benchmark: epoch cost alone and batched against the floor"
# shellcheck disable=SC2086
timeout -k 10 "$(cap 200 200)" $PY -m benchmarks.training --device "$DEVICE" --repeats 1 \
  --save "$OUT/training_costs.json" $TRAIN_ARGS 2>&1 | tee "$OUT/bench_training.txt"

step "1b. grouped convolutions: four ways"
# shellcheck disable=SC2086
timeout -k 10 "$(cap 40 150)" $PY -m benchmarks.grouped_conv --device "$DEVICE" $CONV_ARGS 2>&1 |
  tee -a "$OUT/bench_training.txt"

step "2. paper-grid estimates (training costs from step 1)"
# shellcheck disable=SC2086
timeout -k 10 "$(cap 90 150)" $PY -m benchmarks.paper_cost --device "$DEVICE" --repeats 1 \
  --costs "$OUT/training_costs.json" $COST_ARGS 2>&1 | tee "$OUT/paper_cost.txt"

step "3. TF32 against strict FP32"
# shellcheck disable=SC2086
timeout -k 10 "$(cap 110 90)" $PY -m benchmarks.tf32 --device "$DEVICE" $TF32_ARGS 2>&1 |
  tee "$OUT/tf32.txt"

if [ "${CURVATURE:-0}" = 1 ]; then
  step "curvature benchmarks and device check"
  timeout "$(cap 120 90)" $PY -m benchmarks.curvature --device "$DEVICE" --repeats 3 2>&1 |
    tee "$OUT/bench_curvature.txt"
  timeout "$(cap 90 90)" $PY -m benchmarks.device_check --device "$DEVICE" 2>&1 |
    tee -a "$OUT/bench_curvature.txt"
fi

step "4. the paper grid: LeNet-300-100 training cells until the deadline"
GRID_S=$(cap 100000 45)  # snakemake waits for running jobs: killed 15 s later
start=$(date +%s)
# shellcheck disable=SC2086
timeout -k 15 "$GRID_S" $PY -m snakemake \
  results/aggregate/training_lenet300100_fmnist_temperature.parquet \
  --workflow-profile profiles/gpu --configfile $GRID_CONFIGS > "$OUT/grid.log" 2>&1
echo "snakemake exit $? after $(($(date +%s) - start)) s of $GRID_S"
$PY -m benchmarks.grid_progress --since "$start" 2>&1 | tee "$OUT/grid_summary.txt"
tar czf "$OUT/grid_results.tar.gz" results/train logs/train logs/data logs/init 2>/dev/null
step "done"
