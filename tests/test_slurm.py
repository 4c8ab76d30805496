"""The tiny synthetic grid submitted through ``profiles/slurm`` to a real SLURM cluster.

Needs the local single-node cluster of ``tests/slurm/`` (Debian's slurmctld + slurmd +
munge, on 127.0.0.1); skipped with the reason when ``sbatch`` is missing or no cluster
answers, so the README's plain ``pytest -q`` stays fast. Run them with::

    sudo tests/slurm/install.sh && sudo tests/slurm/cluster.sh start
    .venv/bin/python -m pytest -q -m slurm tests/test_slurm.py
    sudo tests/slurm/cluster.sh stop

Submit host and node are the same machine here, so any scratch path is shared.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
TARGETS = ("results/curvature.parquet", "results/training.parquet")
# Allowed differences between one process per job (SLURM) and jobs as concurrent threads
# of one process (the local default), both with one torch thread: (rtol, atol as a
# fraction of the column's largest magnitude). Measured on the tiny grid in three runs:
# float32 training losses of the two high-loss cells (T=1e-3, 1e-4) differed by up to
# 4.3e-5 relative in two runs, not at all in one with MKL_CBWR=AUTO,STRICT; float64
# curvature was identical in two runs and within 9e-13 relative (plus ~5e-17 noise on a
# zero eigenvalue) in one.
# The cause: MKL rounds differently with operand alignment unless MKL_CBWR=AUTO,STRICT,
# and concurrent threads allocate differently (docs/performance.md, "On a cluster").
TOLERANCE = {"curvature": (1e-9, 1e-9), "training": (1e-4, 1e-6)}
KEYS = ("architecture", "dataset", "variant", "scaling", "scale", "seed")
PROFILE = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
# The tiny grid has 18 curvature cells: groups of 9 (instead of the profile's 20) run
# as two group jobs side by side on the two-CPU test node, halving the wall time.
GROUP_SIZE = 9


def _cluster_state() -> str | None:
    """Why the SLURM tests cannot run here, or None when a node is ready."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return "sbatch/sinfo not installed (sudo tests/slurm/install.sh)"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=5)
    except subprocess.TimeoutExpired:
        return "sinfo timed out: no slurmctld answers (sudo tests/slurm/cluster.sh start)"
    states = out.stdout.split()
    if out.returncode != 0 or not any(s.rstrip("*") in ("idle", "mix", "alloc") for s in states):
        msg = (out.stderr.strip().splitlines() or states or ["no answer"])[-1]
        return f"no SLURM node ready ({msg}); start one: sudo tests/slurm/cluster.sh start"
    return None


_REASON = _cluster_state()
pytestmark = [pytest.mark.slurm, pytest.mark.skipif(_REASON is not None, reason=_REASON or "")]


def snakemake(workdir: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """The real CLI in ``workdir``; output captured, never raises on a non-zero exit."""
    cmd = [SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir)]
    return subprocess.run(
        [*cmd, *args], cwd=workdir, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def scratch_root():
    """This module's own scratch folder (seen by submit host and node: same machine).

    Not pytest's tmp_path: its base folder is shared by every pytest run of the user and
    pruned to the newest three, which removed a cluster run's folder mid-run here.
    """
    root = Path(tempfile.mkdtemp(prefix="goldilocks-slurm-test-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def scratch(root: Path, name: str, **overrides) -> Path:
    """A scratch folder holding configs/tiny.yaml (with overrides) as its config.yaml."""
    workdir = root / name
    workdir.mkdir()
    config = yaml.safe_load((ROOT / "configs/tiny.yaml").read_text())
    for key, value in overrides.items():
        section, _, leaf = key.partition(".")
        config[section][leaf] = value
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return workdir


def submit(workdir: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """Snakemake through profiles/slurm, printing the sbatch lines, keeping SLURM logs."""
    profile = str(ROOT / "profiles/slurm")
    # The plugin deletes the SLURM logs of successful jobs unless told to keep them.
    extra = ("--slurm-keep-successful-logs", "--verbose")
    # Flags last: they end any multi-value option in args (--set-resources a=1 target).
    return snakemake(workdir, "--workflow-profile", profile, *args, *extra, timeout=timeout)


def sbatch_lines(log: str) -> list[str]:
    """The ``sbatch`` command lines the plugin logged under ``--verbose``."""
    return re.findall(r"^sbatch call: (sbatch .*)$", log, flags=re.MULTILINE)


@pytest.fixture(scope="module")
def slurm_run(scratch_root):
    """The tiny grid on the cluster through the workflow profile; (workdir, result, seconds)."""
    workdir = scratch(scratch_root, "slurm")
    t0 = time.monotonic()
    result = submit(workdir, *TARGETS, "--group-components", f"curvature={GROUP_SIZE}")
    seconds = time.monotonic() - t0
    (workdir / "snakemake.log").write_text(result.stdout + result.stderr)
    print(f"\nslurm run: {seconds:.0f} s wall, log {workdir / 'snakemake.log'}")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return workdir, result, seconds


@pytest.fixture(scope="module")
def local_run(scratch_root):
    """The same grid with the local default profile (threads, torch threads 1)."""
    workdir = scratch(scratch_root, "local")
    result = snakemake(workdir, "--cores", "2", *TARGETS)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return workdir


def test_grid_on_slurm_matches_local_run(slurm_run, local_run):
    workdir, _, _ = slurm_run
    for target in TARGETS:
        on_slurm = pd.read_parquet(workdir / target)
        local = pd.read_parquet(local_run / target)
        assert list(on_slurm.columns) == list(local.columns)
        assert len(on_slurm) == len(local) > 0
        # Cell runtimes differ between runs; every metric and key column must not.
        columns = [c for c in local.columns if c != "compute_seconds"]
        keys = [c for c in (*KEYS, "lr_base", "epoch") if c in columns]
        on_slurm = on_slurm[columns].sort_values(keys).reset_index(drop=True)
        local = local[columns].sort_values(keys).reset_index(drop=True)
        floats = [c for c in columns if local[c].dtype.kind == "f"]
        others = [c for c in columns if c not in floats]
        pd.testing.assert_frame_equal(on_slurm[others], local[others], check_exact=True)
        rtol, atol = TOLERANCE[Path(target).stem]
        for column in floats:
            x, y = on_slurm[column].to_numpy(), local[column].to_numpy()
            scale = np.nanmax(np.abs(y), initial=0.0)
            assert np.allclose(x, y, rtol=rtol, atol=atol * scale, equal_nan=True), column
            differ = int(np.sum((x != y) & ~(np.isnan(x) & np.isnan(y))))
            if differ:
                print(f"{target} {column}: {differ} of {len(x)} values differ (within tolerance)")


def test_each_curvature_group_is_one_slurm_job(slurm_run):
    workdir, result, _ = slurm_run
    log = result.stdout + result.stderr
    lines = sbatch_lines(log)
    cells = len(list((workdir / "results/curvature").rglob("*.parquet")))
    group_size = GROUP_SIZE
    # Each sbatch logs to .snakemake/slurm_logs/<rule_NAME or group_NAME>/...
    kinds = Counter(re.search(r"/slurm_logs/([a-z_]+)/", line)[1] for line in lines)
    groups = [line for line in lines if "/slurm_logs/group_curvature" in line]
    # No curvature cell was submitted on its own; ceil(cells / group_size) group jobs ...
    assert cells > 1
    assert "rule_curvature" not in kinds
    assert len(groups) == -(-cells // group_size)
    # ... each asking for one CPU and its cells' summed runtime (they run one by one) ...
    per_cell = PROFILE["set-resources"]["curvature"]["runtime"]
    assert all("--cpus-per-task=1 " in line for line in groups)
    assert sum(int(re.search(r" -t (\d+) ", line)[1]) for line in groups) == per_cell * cells
    # ... and each ONE SLURM job: one SLURM log per group, all its cells done in it.
    group_logs = sorted((workdir / ".snakemake/slurm_logs").glob("group_curvature*/**/*.log"))
    assert len(group_logs) == len(groups)
    done = {m for p in group_logs for m in re.findall(r"curvature/\S+\.parquet", p.read_text())}
    assert len(done) == cells
    # Every other job is one sbatch of its own.
    variants = len(yaml.safe_load((workdir / "config.yaml").read_text())["variants"])
    assert kinds["rule_data"] == 1
    assert kinds["rule_init"] == variants
    assert kinds["rule_train"] == len(list((workdir / "results/train").rglob("*.parquet")))
    print("\nsbatch lines:\n" + "\n".join(line.split(" --wrap=")[0] for line in lines))


def test_job_killed_by_time_limit_fails_the_run(scratch_root):
    """A training cell over its SLURM time limit: the run exits non-zero, in bounded time."""
    # One training cell with far more epochs than one minute allows.
    workdir = scratch(
        scratch_root,
        "timeout",
        **{"training.epochs": 100000, "training.log_every": 1000, "training.curvature_every": 0},
    )
    # T = 10^-1 x depth 3 (times_depth) = 0.001 for the homogeneous LeNet-300-100.
    target = "results/train/lenet300100_synthetic/homogeneous/temperature/scale0.001_lr0.1_seed0"
    t0 = time.monotonic()
    result = submit(workdir, f"{target}.parquet", "--set-resources", "train:runtime=1", timeout=600)
    seconds = time.monotonic() - t0
    log = result.stdout + result.stderr
    print(f"\ntimeout run: exit {result.returncode} after {seconds:.0f} s")
    assert result.returncode != 0
    assert "SLURM status is: 'TIMEOUT'" in log, log[-4000:]
    assert seconds < 400
