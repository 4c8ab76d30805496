"""float32 against float64 curvature metrics at the extremes of the configured grids.

For every variant and scaling of one pair (the config's first, or ``--pair``), at the
smallest, middle and largest scale, compute the curvature metrics of one seed in both
precisions from the same stored initialisation (``<workdir>/results/init``, built by the
workflow) and print the differences side by side, with the time each precision took.

    python -m benchmarks.precision [--config config.yaml] [--seed 0]
        [--workdir DIR] [--pair resnet4/fmnist] [--device cuda]

On a GPU (``--device cuda``) both precisions run there with the ``auto`` methods, TF32 off.
Columns: Tr/||H||_F in both precisions and their difference, the fraction of positive
eigenvalues, and the differences of Tr/||.||_F for G and for the H-term.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

from benchmarks.timing import device_or_exit
from goldilocks.config import load_merged
from goldilocks.curvature import measure, resolve_methods
from goldilocks.grid import alpha_and_temperature, applies, scales_of
from goldilocks.initial import InitialState, problem
from goldilocks.runtime import configure_torch
from goldilocks.variants import describe

ROOT = Path(__file__).resolve().parents[1]


def run(init, arch, dataset, variant, scaling, scale, dtype, device):
    alpha, temperature = alpha_and_temperature(scaling, scale, arch, variant)
    cell = problem(init, arch, dataset, variant, alpha, temperature, device, dtype)
    methods = resolve_methods("auto", "auto", device, cell.params)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    row, _ = measure(cell, *methods)
    return row, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config",
        default=str(ROOT / "config.yaml"),
        help="the run's config, merged over config.yaml as Snakemake merges --configfile",
    )
    parser.add_argument("--seed", type=int, default=0, help="the seed whose init is read")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--workdir", default=str(ROOT), help="folder holding results/init")
    parser.add_argument("--pair", help="architecture/dataset (default: the config's first)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default cpu)")
    args = parser.parse_args()
    configure_torch(args.threads)  # and TF32 off
    device = device_or_exit(args.device)
    config = load_merged(Path(args.config).resolve(), ROOT)
    pair = config["pairs"][0]
    arch, dataset = args.pair.split("/") if args.pair else (pair["architecture"], pair["dataset"])
    print(f"{arch}/{dataset} seed {args.seed}, {device}, torch threads {args.threads}")
    print(
        f"{'variant':12} {'scaling':14} {'scale':>9} | {'Tr/|H| f64':>10} {'f32':>10} {'|diff|':>8}"
        f" | {'frac+ f64':>9} {'f32':>6} | {'G diff':>8} {'H-term diff':>11}"
        f" | {'f64 s':>6} {'f32 s':>6}"
    )
    worst, t32, t64 = 0.0, 0.0, 0.0
    for variant in config["variants"]:
        init_dir = Path(args.workdir) / f"results/init/{arch}_{dataset}/{variant}"
        init_path = init_dir / f"seed{args.seed}.pt"
        init = InitialState.load(init_path)
        description = describe(arch, variant)
        for scaling in config["curvature"]["scalings"]:
            if not applies(scaling, description):  # joint_residual: variants with an m
                continue
            grid = scales_of(config["curvature"]["scales"], scaling, description)
            for scale in (grid[0], grid[len(grid) // 2], grid[-1]):
                cell = (init, arch, dataset, variant, scaling, scale)
                r64, s64 = run(*cell, torch.float64, device)
                r32, s32 = run(*cell, torch.float32, device)
                t64, t32 = t64 + s64, t32 + s32
                a, b = r64["hessian_trace_ratio"], r32["hessian_trace_ratio"]
                diff = abs(a - b) if not (math.isnan(a) and math.isnan(b)) else 0.0
                gdiff = abs(r64["gterm_trace_ratio"] - r32["gterm_trace_ratio"])
                hdiff = abs(r64["hterm_trace_ratio"] - r32["hterm_trace_ratio"])
                worst = max(worst, diff if not math.isnan(diff) else math.inf)
                print(
                    f"{variant:12} {scaling:14} {scale:9.3g} | {a:10.5f} {b:10.5f} {diff:8.1e}"
                    f" | {r64['hessian_frac_pos']:9.2f} {r32['hessian_frac_pos']:6.2f} |"
                    f" {gdiff:8.1e} {hdiff:11.1e} | {s64:6.2f} {s32:6.2f}"
                )
    print(
        f"worst |Tr/||H||_F difference|: {worst:.2e}; total time float64 {t64:.1f} s, "
        f"float32 {t32:.1f} s, ratio {t64 / t32:.2f}"
    )


if __name__ == "__main__":
    main()
