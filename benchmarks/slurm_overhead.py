"""Per-cell overhead of curvature cells on SLURM: profiles/slurm vs workflow/slurm_batched.py.

Needs the local test cluster (tests/slurm/cluster.sh start). In a scratch folder it
prepares a grid of LeNet-300-100 curvature cells on real Fashion-MNIST (5 variants x 3
scalings x ``--scales`` scales, one seed; batch 128, d 50, float32 as in the quick
default; training off), builds data and init files locally once, then runs the same cell
targets in each mode from a copy of that folder:

- ``grouped``: ``snakemake --workflow-profile profiles/slurm`` (groups of 20 curvature
  cells; inside a group job every cell is its own ``srun python -m snakemake``);
- ``batched``: ``python workflow/slurm_batched.py`` with profiles/slurm-batched (one
  allocation per slice; its cells are threads of one Snakemake).

Per mode it prints the wall time of the command, the SLURM jobs with their run times
(``scontrol``: StartTime to EndTime) and CPUs, the summed ``compute_seconds`` of the
cells (C, each cell's own measurement) and two overheads per cell (N cells):

- ``slot overhead`` = (sum over the mode's cell allocations of run time x CPUs - C) / N:
  allocation CPU-seconds per cell not spent computing (what a cluster bills);
- ``wall overhead`` = (W - C / p) / N with W the span from the first allocation's start
  to the last one's end and p the cells running at once (CPUs in use): wall seconds per
  cell beyond perfectly parallel compute. slot = p x wall when all p slots stay busy.

    python -m benchmarks.slurm_overhead [--scales 7] [--modes batched grouped batched]
        [--cpus 2] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import yaml

from goldilocks.slurm_plan import due_jobs

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")]
DRIVER = ROOT / "workflow" / "slurm_batched.py"


def config(scales: int) -> dict:
    """The quick default (config.yaml) cut to >= 100 curvature cells, training off."""
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg.update(seeds=[0], device="cpu")
    cfg["pairs"] = [{"architecture": "lenet300100", "dataset": "fmnist"}]
    cfg["data"].update(mirrors=["/usr/share/datasets/fashion-mnist"], download=False)
    cfg["training"]["enabled"] = False
    for grid in cfg["curvature"]["scales"].values():
        grid["num"] = scales
    assert cfg["curvature"]["batch_size"] == 128 and cfg["curvature"]["subspace_dim"] == 50
    return cfg


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def slurm_jobs(ids: list[str]) -> list[dict]:
    """Name, CPUs, start, end and run seconds of each SLURM job (scontrol)."""
    jobs = []
    for job_id in ids:
        out = subprocess.run(
            ["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True
        ).stdout
        fields = dict(re.findall(r"(\w+)=(\S*)", out))
        start = datetime.fromisoformat(fields["StartTime"])
        end = datetime.fromisoformat(fields["EndTime"])
        jobs.append(
            {
                "id": job_id,
                "comment": fields.get("Comment", ""),
                "state": fields["JobState"],
                "cpus": int(fields["NumCPUs"]),
                "start": start,
                "end": end,
                "seconds": (end - start).total_seconds(),
            }
        )
    return jobs


def measure(mode: str, workdir: Path, targets: list[str], cpus: int) -> dict:
    """Run the cell targets in ``mode``; its timings and overheads."""
    load_before = uptime()
    t0 = time.monotonic()
    if mode == "grouped":
        cmd = [*SNAKEMAKE, "--directory", str(workdir), "--workflow-profile"]
        cmd += [str(ROOT / "profiles/slurm"), "--slurm-keep-successful-logs", *targets]
    else:
        settings = yaml.safe_load((ROOT / "profiles/slurm-batched/sbatch.yaml").read_text())
        settings["cells"]["curvature"]["cpus"] = cpus
        path = workdir / "sbatch.yaml"
        path.write_text(yaml.safe_dump(settings, sort_keys=False))
        cmd = [sys.executable, str(DRIVER), "--directory", str(workdir), "--settings", str(path)]
        cmd += targets
    result = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    wall = time.monotonic() - t0
    log = result.stdout + result.stderr
    (workdir / f"{mode}.log").write_text(log)
    if result.returncode != 0:
        raise SystemExit(f"{mode} run failed; log {workdir / f'{mode}.log'}")
    if mode == "grouped":
        ids = re.findall(r"has been submitted with SLURM jobid (\d+)", log)
    else:
        ids = re.findall(r"^slurm_batched: \S+: SLURM job (\d+),", log, flags=re.M)
    jobs = [j for j in slurm_jobs(ids) if "curvature" in j["comment"]]
    rows = [workdir / t for t in targets]
    compute = float(sum(pd.read_parquet(r)["compute_seconds"].sum() for r in rows))
    n = len(rows)
    span = (max(j["end"] for j in jobs) - min(j["start"] for j in jobs)).total_seconds()
    slots = sum(j["seconds"] * j["cpus"] for j in jobs)
    # Cells running at once: every cell rule has threads 1, so the CPUs of the allocations
    # in flight together; on the 2-CPU test node at most 2.
    parallel = min(cpus, sum(j["cpus"] for j in jobs))
    return {
        "mode": mode,
        "cells": n,
        "slurm_jobs": len(jobs),
        "wall_command_s": round(wall, 1),
        "span_s": span,
        "allocation_cpu_s": slots,
        "compute_s": round(compute, 1),
        "parallel": parallel,
        "slot_overhead_per_cell_s": round((slots - compute) / n, 2),
        "wall_overhead_per_cell_s": round((span - compute / parallel) / n, 2),
        "load_before": load_before,
        "load_after": uptime(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scales", type=int, default=7, help="scales per grid (x15 cells)")
    parser.add_argument("--modes", nargs="+", default=["batched", "grouped", "batched"])
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the test node")
    parser.add_argument("--workdir", help="scratch folder (default: a new temporary one)")
    args = parser.parse_args()
    base = Path(args.workdir or tempfile.mkdtemp(prefix="goldilocks-slurm-bench-"))
    prep = base / "prep"
    prep.mkdir(parents=True, exist_ok=True)
    (prep / "config.yaml").write_text(yaml.safe_dump(config(args.scales), sort_keys=False))
    dry = subprocess.run(
        [*SNAKEMAKE, "--directory", str(prep), "--dry-run", "results/curvature.parquet"],
        capture_output=True,
        text=True,
        check=True,
    )
    jobs = due_jobs(dry.stdout)
    targets = [job[0] for job in jobs["curvature"]]
    upstream = [f for rule in ("data", "init") for job in jobs.get(rule, []) for f in job]
    print(f"{len(targets)} curvature cells; data and init locally in {prep}", flush=True)
    subprocess.run([*SNAKEMAKE, "--directory", str(prep), "--cores", "2", *upstream], check=True)
    results = []
    for i, mode in enumerate(args.modes):
        workdir = base / f"{i}-{mode}"
        shutil.copytree(prep, workdir, symlinks=True)
        print(f"{mode}: running in {workdir}", flush=True)
        results.append(measure(mode, workdir, targets, args.cpus))
        print(json.dumps(results[-1]), flush=True)
    (base / "results.json").write_text(json.dumps(results, indent=1))
    print(
        "\n| mode | cells | SLURM jobs | wall (s) | allocation CPU-s | compute (s) | "
        "slot overhead/cell (s) | wall overhead/cell (s) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['mode']} | {r['cells']} | {r['slurm_jobs']} | {r['wall_command_s']:.0f} | "
            f"{r['allocation_cpu_s']:.0f} | {r['compute_s']:.1f} | "
            f"{r['slot_overhead_per_cell_s']:.2f} | {r['wall_overhead_per_cell_s']:.2f} |"
        )


if __name__ == "__main__":
    main()
