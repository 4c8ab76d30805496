"""Faults through the real Snakemake CLI: a killed run resumes, overflow and divergence
are data, and the thread layout does not change a single bit of the results.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import time
from math import inf
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_workflow import ROOT, SNAKEMAKE, TINY, jobs_run, snakemake, write_config

pytestmark = pytest.mark.slow

#: The tiny grid with training long enough (a few seconds per cell) to be killed in.
LONG = yaml.safe_load(yaml.safe_dump(TINY))
# Curvature along training at every logged epoch: a resumed cell must reproduce it too.
LONG["training"].update(epochs=60, log_every=20, checkpoint_every=5, curvature_every=20)
for grid in LONG["curvature"]["scales"].values():
    grid["num"] = 1  # 7 curvature cells: 2 variants x 3 scalings, joint_residual for residual
N_CURVATURE = 7  # (homogeneous's joint_residual curve is its joint cells: m = k)
CELL_STAGES = ("--until", "curvature", "train")  # no aggregate or figures: cells only


def cell_files(workdir: Path, stage: str) -> list[Path]:
    """The cell files of ``stage`` (a curvature cell's layer ratios are part of its cell)."""
    paths = (workdir / "results" / stage).rglob("*.parquet")
    return sorted(p for p in paths if not p.name.endswith(".layers.parquet"))


def cells(workdir: Path, stage: str) -> pd.DataFrame:
    """All cell files of ``stage``, stacked in path order, without the wall-clock time."""
    paths = cell_files(workdir, stage)
    frame = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    return frame.drop(columns="compute_seconds")


def mtimes(workdir: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in (workdir / "results").rglob("*") if p.is_file()}


def acknowledged(workdir: Path, stage: str) -> set[Path]:
    """Cell files of ``stage`` that Snakemake has recorded as complete.

    Between the job's atomic rename and Snakemake's bookkeeping a file exists but is
    still marked incomplete (``.snakemake/incomplete/<base64 of its path>``); a run killed
    in that window recomputes it under ``--rerun-incomplete``, as it should.
    """
    marks = workdir / ".snakemake/incomplete"
    incomplete = {
        base64.urlsafe_b64decode(m.name).decode()
        for m in (marks.iterdir() if marks.exists() else [])
        if m.is_file() and not m.name.startswith("migration")
    }
    return {p for p in cell_files(workdir, stage) if str(p.relative_to(workdir)) not in incomplete}


def start(workdir: Path, cores: int, stages: tuple[str, ...] = CELL_STAGES) -> subprocess.Popen:
    """The cell stages in the background, in a process group of their own."""
    cmd = [SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir)]
    return subprocess.Popen(
        [*cmd, "--cores", str(cores), *stages],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


def kill_when(proc: subprocess.Popen, ready, timeout: float = 120) -> None:
    """SIGKILL the process group of ``proc`` once ``ready()``."""
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "never ready to be killed"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture
def uninterrupted(tmp_path):
    """The reference: the same cells, one at a time (--cores 1), in the background."""
    reference = tmp_path / "reference"
    reference.mkdir()
    write_config(reference, LONG)
    proc = start(reference, 1)
    yield reference, proc
    if proc.poll() is None:  # the test failed early
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_killed_run_resumes_and_equals_an_uninterrupted_one(tmp_path, uninterrupted):
    reference, reference_run = uninterrupted
    killed = tmp_path / "killed"
    killed.mkdir()
    write_config(killed, LONG)

    # Two cells at a time, killed while training: one cell finished, one checkpointed.
    def ready() -> bool:
        return bool(acknowledged(killed, "train")) and any(
            (killed / "results/checkpoints").rglob("*.pt")
        )

    kill_when(start(killed, 2), ready)
    before = mtimes(killed)
    finished = acknowledged(killed, "train") | acknowledged(killed, "curvature")
    n_train, n_curvature = (
        len(acknowledged(killed, "train")),
        len(acknowledged(killed, "curvature")),
    )
    interrupted = list((killed / "results/checkpoints").rglob("*.pt"))
    assert n_train and interrupted

    # The lock survives a SIGKILL; the profile sets --rerun-incomplete.
    snakemake(killed, "--unlock")
    rerun = snakemake(killed, *CELL_STAGES)
    assert jobs_run(rerun, "train") == 4 - n_train
    assert jobs_run(rerun, "curvature") == N_CURVATURE - n_curvature
    assert jobs_run(rerun, "init") == 0 and jobs_run(rerun, "data") == 0
    after = mtimes(killed)
    for path in finished:  # every finished cell kept, not recomputed
        assert after[path] == before[path], path
    for checkpoint in interrupted:
        log = Path(
            str(checkpoint).replace("/results/checkpoints/", "/logs/train/").replace(".pt", ".log")
        )
        assert "checkpoint: resumed from" in log.read_text()
    assert not list((killed / "results/checkpoints").rglob("*.pt"))  # removed when done
    # How often cells checkpoint is not a reason to recompute them.
    write_config(killed, {**LONG, "training": {**LONG["training"], "checkpoint_every": 7}})
    dry = snakemake(killed, "-n", *CELL_STAGES).stdout
    assert re.search(r"^total\s+0$", dry, re.M), dry

    # Bit-identical to the uninterrupted run on one core, in both stages: resuming and
    # running two cells side by side change nothing.
    assert reference_run.wait(timeout=300) == 0
    for stage in ("train", "curvature"):
        pd.testing.assert_frame_equal(
            cells(killed, stage), cells(reference, stage), check_exact=True
        )


def test_overflow_and_divergence_are_data_and_the_figures_render(tmp_path):
    config = yaml.safe_load(yaml.safe_dump(TINY))
    # alpha = 1e120: the float64 curvature overflows (L = 3: logits ~ 1e360), float32
    # training is non-finite at once, joint's T = alpha^3 is inf and joint_residual's
    # T = alpha^m (homogeneous: alpha^3 = inf; residual: alpha^2 = 1e240, which squares
    # to inf in G). eta0 = 1000 makes finite cells diverge
    # after a few steps.
    config["curvature"]["scales"]["alpha"]["extra"] = [1e120]
    config["training"]["scalings"] = ["temperature", "alpha"]
    config["training"]["scales"]["alpha"]["extra"] = [1e120]
    config["training"]["lr_base"] = [0.1, 1000.0]
    write_config(tmp_path, config)
    snakemake(tmp_path)

    curvature = pd.read_parquet(tmp_path / "results/curvature.parquet")
    extreme = curvature["scale"] == 1e120
    assert extreme.sum() == 6  # alpha, joint and joint_residual (homogeneous's: joint's rows)
    assert curvature.loc[extreme, "nonfinite"].all()
    assert curvature.loc[extreme, "hessian_trace_ratio"].isna().all()
    assert not curvature.loc[~extreme, "nonfinite"].any()
    assert (curvature.loc[extreme & (curvature["scaling"] == "joint"), "temperature"] == inf).all()

    training = pd.read_parquet(tmp_path / "results/training.parquet")
    keys = ["variant", "scaling", "scale", "lr_base"]
    final = training.sort_values("epoch").groupby(keys).tail(1).set_index(keys)
    assert final["diverged"].xs(1e120, level="scale").all()
    assert (final["diverged_epoch"].xs(1e120, level="scale") == 0).all()
    assert final["diverged"].xs(1000.0, level="lr_base").all()
    assert (final["diverged_epoch"].xs(1000.0, level="lr_base") > 0).any()
    assert not final["diverged"].xs(0.1, level="lr_base").drop(1e120, level="scale").any()
    assert final.loc[final["diverged"], "train_acc"].isna().all()
    # A diverged cell is diverged in all its rows, with one epoch.
    per_cell = training.groupby(keys)
    assert (per_cell["diverged"].nunique() == 1).all()

    zone = pd.read_parquet(tmp_path / "results/goldilocks_zone.parquet")
    # 2 variants x 4 curvature scalings: homogeneous's joint_residual (T = alpha^m, m = k)
    # is drawn from its joint cells but has its own zone row.
    assert len(zone) == 8 and zone["peak_value"].notna().all()
    for n in (1, 2):
        assert (
            tmp_path / f"results/figures/fig{n}_lenet300100_synthetic.png"
        ).stat().st_size > 10_000
