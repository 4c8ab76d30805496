#!/usr/bin/env bash
# One call on a lent GPU machine (see docs/performance.md, "On one GPU"): the training
# benchmark (cells alone and batched against the FP32 floor; issue 12's goals) and both
# paper-grid estimates first, then curvature timings and peak memory, the device-vs-CPU
# check (CURVATURE=1; measured before), and the tiny workflow through profiles/gpu. Writes logs and the
# tiny run's tables to $OUT (default ./gpu-out). Snakemake comes from wheels in .whl/ when
# the machine has none (it cannot reach PyPI). To build .whl/ (git-ignore it): for each
# package of `pip show snakemake`'s dependency closure that the GPU image lacks, run
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl NAME==VERSION
# and `pip wheel --no-deps -w .whl NAME==VERSION` for sdist-only ones (connection_pool);
# 39 wheels, 26 MB for Snakemake 9.27.1 on 2026-11-26. Carry .whl with the call.
set -u
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
PY=${PY:-python3}
step() { echo "== $1 ($(date +%T))"; }
step "device"
nvidia-smi -L
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
step "training benchmark: epoch cost alone and batched, K = 1..64, against the floor"
timeout 420 $PY benchmarks/training.py --device cuda --cells 1,4,16,32,64 --repeats 1 \
  2>&1 | tee "$OUT/bench_training.txt"
step "paper-grid estimates: configs/paper.yaml and configs/extended.yaml"
timeout 240 $PY benchmarks/paper_cost.py --device cuda --repeats 1 2>&1 | tee "$OUT/paper_cost.txt"
if [ "${CURVATURE:-0}" = 1 ]; then  # measured on an H100 on 2026-11-26; CURVATURE=1 reruns
step "curvature benchmark, LeNet-300-100"
timeout 150 $PY benchmarks/curvature.py --device cuda --repeats 5 2>&1 | tee "$OUT/bench_lenet300100.txt"
step "device check"
timeout 150 $PY benchmarks/device_check.py --device cuda 2>&1 | tee "$OUT/device_check.txt"
step "curvature benchmark, ResNet-4 / CIFAR-10 (largest model)"
timeout 90 $PY benchmarks/curvature.py --device cuda --arch resnet4 --dataset cifar10 \
  --skip-subspace --repeats 3 2>&1 | tee "$OUT/bench_resnet4.txt"
fi
step "tiny workflow, profiles/gpu"
if [ -d .whl ] && ! $PY -c "import snakemake" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    .whl/*.whl && export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
start=$(date +%s)
timeout 150 $PY -m snakemake --configfile configs/tiny.yaml --config device=auto \
  --workflow-profile profiles/gpu > "$OUT/tiny_gpu.log" 2>&1
echo "snakemake exit $? in $(( $(date +%s) - start )) s"
tail -5 "$OUT/tiny_gpu.log"
grep -h "device\|curvature {" logs/curvature/*/*.log 2>/dev/null | head -3
tar czf "$OUT/tiny_gpu_results.tar.gz" results/aggregate results/curvature results/train logs 2>/dev/null
step "done"
