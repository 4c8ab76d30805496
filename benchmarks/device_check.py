"""Curvature on an accelerator against the CPU in float64: every method, every model.

For each architecture x variant (paper widths, CIFAR-10- or Fashion-MNIST-shaped random
batch of 32, d = 16), :func:`goldilocks.curvature.measure` runs on the device with every
pair of H method (loop, vmap) and J R method (loop, sparse, vmap), in float64 and float32
(TF32 off), and is compared with the CPU float64 run of the same cell: the largest
relative difference over the ``hessian_*``, ``gterm_*`` and ``hterm_*`` eigenvalue
metrics (eig_max, eig_min, spectral_norm) and the absolute difference of the ratios
(trace_ratio, frac_pos). One line per model and dtype; exit status 1 if any float64
difference exceeds 1e-8 or any float32 one exceeds 1e-3.

    python -m benchmarks.device_check [--device cuda]
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import torch

from benchmarks.timing import device_or_exit
from goldilocks.curvature import MATRICES, measure
from goldilocks.initial import random_problem
from goldilocks.runtime import configure_torch
from goldilocks.variants import VARIANTS

PAIRS = (("lenet300100", "fmnist"), ("lenet5", "cifar10"), ("resnet4", "cifar10"))
METHODS = [(h, j) for h in ("loop", "vmap") for j in ("loop", "sparse", "vmap")]
SCALE_KEYS = ("eig_max", "eig_min", "spectral_norm")
RATIO_KEYS = ("trace_ratio", "frac_pos")
LIMITS = {"float64": 1e-8, "float32": 1e-3}


def cell(arch, dataset, variant, dtype, device, method, jvp):
    return measure(random_problem(arch, dataset, variant, 32, 16, device, dtype), method, jvp)[0]


def difference(row, ref) -> float:
    worst = 0.0
    for m in MATRICES:
        for k in SCALE_KEYS:
            a, b = row[f"{m}_{k}"], ref[f"{m}_{k}"]
            worst = max(worst, abs(a - b) / max(abs(b), 1e-300))
        for k in RATIO_KEYS:
            worst = max(worst, abs(row[f"{m}_{k}"] - ref[f"{m}_{k}"]))
    return worst if math.isfinite(worst) else math.inf


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda", help="the accelerator (cuda, cuda:N, mps)")
    args = parser.parse_args()
    configure_torch()  # TF32 off
    device = device_or_exit(args.device)
    print(f"device {device}: {torch.cuda.get_device_name() if device.type == 'cuda' else ''}")
    failed = False
    for arch, dataset in PAIRS:
        for variant in VARIANTS:
            ref = cell(arch, dataset, variant, torch.float64, "cpu", "loop", "loop")
            for dtype_name, limit in LIMITS.items():
                dtype = getattr(torch, dtype_name)
                start = time.perf_counter()
                worst = max(
                    difference(cell(arch, dataset, variant, dtype, device, h, j), ref)
                    for h, j in METHODS
                )
                bad = not worst <= limit
                failed |= bad
                print(
                    f"{arch:12} {variant:12} {dtype_name:8} worst diff vs CPU float64 "
                    f"{worst:.2e} over {len(METHODS)} method pairs "
                    f"({time.perf_counter() - start:.1f} s){'  FAIL' if bad else ''}",
                    flush=True,
                )
    print("FAILED" if failed else "all within limits")
    return int(failed)


if __name__ == "__main__":
    sys.exit(main())
