"""Per-job overhead: curvature cells as threads of one Snakemake process vs processes.

Runs the real Snakemake CLI twice on the same cells of the tiny synthetic config in a
scratch folder: once with the default profile (``--force-use-threads``: every ``run:`` job
is a thread of the main process, torch imported once), once with
``--workflow-profile none`` (each job its own ``python -m snakemake`` process that
re-parses the workflow and imports torch, as on a cluster node). Prints the wall
time of each, the summed compute seconds of the cells, and the ratios.

    python -m benchmarks.job_overhead [--cells 12] [--cores 2]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def run(workdir: Path, cores: int, threads: bool, targets: list[str]) -> float:
    # --force-use-threads is a switch that the default profile turns on; without any
    # workflow profile every run: job is a process of its own (as on a cluster node).
    profile = [] if threads else ["--workflow-profile", "none"]
    cmd = [SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir)]
    cmd += ["--cores", str(cores), *profile, *targets]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cells", type=int, default=12, help="curvature cells per mode")
    parser.add_argument("--cores", type=int, default=2, help="snakemake --cores")
    args = parser.parse_args()
    config = yaml.safe_load((ROOT / "configs/tiny.yaml").read_text())
    config["variants"] = ["homogeneous"]
    config["curvature"]["scalings"] = ["temperature"]
    config["curvature"]["scales"]["temperature"]["num"] = args.cells
    config["training"]["enabled"] = False
    from goldilocks.cells import curvature_cells
    from goldilocks.config import check_config

    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    pattern = (
        "results/curvature/{architecture}_{dataset}/{variant}/{scaling}/"
        "scale{scale}_seed{seed}.parquet"
    )
    targets = [
        pattern.format(**c.wildcards()) for c in curvature_cells(check_config(config, schema))
    ]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "config.yaml").write_text(yaml.safe_dump(config))
        # Inputs (data, init) first, so both runs time the same curvature jobs only.
        run(work, args.cores, True, ["results/init/lenet300100_synthetic/homogeneous/seed0.pt"])
        for threads in (True, False):
            shutil.rmtree(work / "results/curvature", ignore_errors=True)
            wall = run(work, args.cores, threads, targets)
            compute = sum(pd.read_parquet(work / t)["compute_seconds"].sum() for t in targets)
            results[threads] = (wall, compute, len(targets))
    (tw, tc, n), (pw, pc, _) = results[True], results[False]
    print(f"{n} curvature cells (LeNet-300-100, synthetic, d=10), --cores {args.cores}")
    print(f"{'mode':28} {'wall s':>8} {'sum compute s':>14} {'wall/job s':>11}")
    print(f"{'threads (profiles/default)':28} {tw:8.1f} {tc:14.2f} {tw / n:11.2f}")
    print(f"{'one process per job':28} {pw:8.1f} {pc:14.2f} {pw / n:11.2f}")
    print(f"processes / threads wall ratio: {pw / tw:.1f}x")


if __name__ == "__main__":
    main()
