#!/usr/bin/env bash
# Run HERE, on the development machine, before a call to a lent GPU machine: builds .gpu/
# (git-ignored), which the call carries (`carry: [".gpu"]`) and benchmarks/gpu.sh uses.
#   .gpu/whl            Snakemake (this venv's version) and its whole dependency closure as
#                       wheels for CPython 3.12 on x86-64 Linux: the GPU image has torch
#                       but no Snakemake, and cannot reach PyPI. gpu.sh installs only what
#                       the image lacks (pip --no-index --find-links).
#   .gpu/fashion-mnist  the four Fashion-MNIST IDX files from the local mirror
#                       (Debian's dataset-fashion-mnist), for the paper-grid run.
# About 60 MB in all; a device call carries at most 64 MiB with the working tree.
# --help prints this header; the script takes no arguments (settings are environment variables).
. "$(dirname "$0")/no_args.sh"
set -eu
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
MIRROR=${MIRROR:-/usr/share/datasets/fashion-mnist}
read -r SNAKEMAKE POOL < <($PY -c "import importlib.metadata as m; \
print(m.version('snakemake'), m.version('connection_pool'))")
rm -rf .gpu/whl && mkdir -p .gpu/whl .gpu/fashion-mnist
# connection_pool is published as an sdist only: build its (pure Python) wheel here.
$PY -m pip wheel -q --no-deps -w .gpu/whl "connection_pool==$POOL"
$PY -m pip download -q -d .gpu/whl --find-links .gpu/whl --only-binary=:all: \
  --python-version 3.12 --implementation cp --abi cp312 \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform any "snakemake==$SNAKEMAKE"
cp "$MIRROR"/*-ubyte* .gpu/fashion-mnist/
echo "snakemake $SNAKEMAKE: $(ls .gpu/whl | wc -l) wheels; .gpu/ $(du -sh .gpu | cut -f1)"
