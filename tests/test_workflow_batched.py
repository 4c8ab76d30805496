"""Training cells batched by the real Snakemake CLI (``training.batch_cells``), and
``training.pairs``.

On the CPU a batch trains with the ``loop`` engine (:func:`goldilocks.engines.batch_method`),
which runs every cell exactly as alone: batched tables equal the one-by-one tables to the
bit, also after a kill and resume, and that is what is asserted here. (The ``vmap`` engine
of a GPU agrees within 2e-5 relative in float32, tests/test_batched.py and
tests/test_jobs.py.) ``--cores 4`` lets four train jobs run at once as threads, so they
meet.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_reliability import cells, kill_when, start
from test_workflow import ROOT, TINY, dry_run_jobs, jobs_run, snakemake, write_config

pytestmark = pytest.mark.slow

#: The tiny grid with eight training cells (2 variants x 2 temperatures x 2 rates; one
#: seed), long enough to be killed in, with curvature along training (probes run inside
#: the batch) and checkpoints.
GRID = yaml.safe_load(yaml.safe_dump(TINY))
GRID["training"].update(
    lr_base=[0.1, 1.0],
    epochs=40,
    log_every=20,
    checkpoint_every=5,
    curvature_every=20,
    batch_wait=2,
)
TRAIN_ONLY = ("--until", "train")  # data, init and the training cells


def config(batch_cells: int, **training) -> dict:
    grid = yaml.safe_load(yaml.safe_dump(GRID))
    grid["training"].update(batch_cells=batch_cells, **training)
    return grid


def batch_sizes(workdir: Path) -> list[int]:
    """The batch size every training cell's log reports."""
    logs = (workdir / "logs/train").rglob("*.log")
    return [int(m) for p in logs for m in re.findall(r"batch of (\d+)$", p.read_text(), re.M)]


@pytest.fixture(scope="module")
def one_by_one(tmp_path_factory) -> Path:
    """The reference: every cell on its own (batch_cells 1)."""
    workdir = tmp_path_factory.mktemp("one_by_one")
    write_config(workdir, config(1))
    snakemake(workdir, "--cores", "4", *TRAIN_ONLY)
    assert set(batch_sizes(workdir)) == {1}
    return workdir


def test_batched_run_equals_one_by_one_and_batch_cells_reruns_nothing(one_by_one, tmp_path):
    write_config(tmp_path, config(4))
    snakemake(tmp_path, "--cores", "4", *TRAIN_ONLY)
    sizes = batch_sizes(tmp_path)
    assert len(sizes) == 8 and max(sizes) >= 2, sizes  # four job threads met
    pd.testing.assert_frame_equal(
        cells(tmp_path, "train"), cells(one_by_one, "train"), check_exact=True
    )
    # An execution setting: other batch sizes and waits rerun nothing.
    write_config(tmp_path, config(2, batch_wait=0.5))
    assert dry_run_jobs(tmp_path, *TRAIN_ONLY) == {}
    # chunk_size is not one (docs/method.md 5.1): it moves float32 rounding, all 8 rerun.
    write_config(tmp_path, config(4, chunk_size="auto"))
    assert dry_run_jobs(tmp_path, *TRAIN_ONLY) == {"train": 8}
    # One more learning rate: only its 4 cells (2 variants x 2 temperatures).
    write_config(tmp_path, config(4, lr_base=[0.1, 1.0, 0.3]))
    assert dry_run_jobs(tmp_path, *TRAIN_ONLY) == {"train": 4}


def test_killed_batched_run_resumes_to_the_same_tables(one_by_one, tmp_path):
    write_config(tmp_path, config(4))

    def batch_training() -> bool:  # a batch of two or more cells is training
        logs = (tmp_path / "logs/train").rglob("*.log")
        batched = any(re.search(r"training in a batch of [2-4] ", p.read_text()) for p in logs)
        return batched and any((tmp_path / "results/checkpoints").rglob("*.pt"))

    kill_when(start(tmp_path, 4, TRAIN_ONLY), batch_training)
    interrupted = list((tmp_path / "results/checkpoints").rglob("*.pt"))
    finished = len(list((tmp_path / "results/train").rglob("*.parquet")))
    assert interrupted and finished < 8
    snakemake(tmp_path, "--unlock")
    rerun = snakemake(tmp_path, "--cores", "4", *TRAIN_ONLY)
    assert 8 - finished <= jobs_run(rerun, "train")  # at most the cells Snakemake lost
    for checkpoint in interrupted:
        log = Path(
            str(checkpoint).replace("/results/checkpoints/", "/logs/train/").replace(".pt", ".log")
        )
        assert "checkpoint: resumed from" in log.read_text()
    assert not list((tmp_path / "results/checkpoints").rglob("*.pt"))
    pd.testing.assert_frame_equal(
        cells(tmp_path, "train"), cells(one_by_one, "train"), check_exact=True
    )


def test_batches_hold_at_most_what_runs_at_once(one_by_one, tmp_path):
    # batch_cells 4 with two job slots: batches of at most 2, said once in one line, by
    # the first train job: a run that trains nothing (here a dry run) says nothing.
    write_config(tmp_path, config(4))
    assert "batch_cells" not in snakemake(tmp_path, "--cores", "2", "-n", *TRAIN_ONLY).stderr
    proc = snakemake(tmp_path, "--cores", "2", *TRAIN_ONLY)
    said = [ln for ln in proc.stderr.splitlines() if "training.batch_cells is 4" in ln]
    assert said == [
        "goldilocks: training.batch_cells is 4 but at most 2 train jobs run at once here "
        "(--cores 2), so batches hold at most 2 cells: on a GPU run --workflow-profile "
        "profiles/gpu (not --profile; no --cores), on a CPU set batch_cells: 1"
    ]
    sizes = batch_sizes(tmp_path)
    assert len(sizes) == 8 and max(sizes) <= 2, sizes
    pd.testing.assert_frame_equal(
        cells(tmp_path, "train"), cells(one_by_one, "train"), check_exact=True
    )


def test_jobs_in_their_own_process_train_alone_without_waiting(one_by_one, tmp_path):
    # Without the profile's threads every job is a process of its own: no mate can join
    # it, so its cell trains at once (a wait of batch_wait would outlast the timeout).
    write_config(tmp_path, config(4, batch_wait=3600))
    proc = snakemake(tmp_path, "--workflow-profile", "none", "--cores", "4", *TRAIN_ONLY)
    assert "training.batch_cells" not in proc.stderr
    assert batch_sizes(tmp_path) == [1] * 8
    pd.testing.assert_frame_equal(
        cells(tmp_path, "train"), cells(one_by_one, "train"), check_exact=True
    )


TWO_PAIRS = yaml.safe_load(yaml.safe_dump(TINY))
TWO_PAIRS["pairs"] = [
    {"architecture": "lenet300100", "dataset": "synthetic"},
    {"architecture": "lenet5", "dataset": "synthetic"},
]
TWO_PAIRS["training"]["pairs"] = [{"architecture": "lenet300100", "dataset": "synthetic"}]


def test_training_pairs_limit_training_and_its_figures(tmp_path):
    write_config(tmp_path, TWO_PAIRS)
    planned = dry_run_jobs(tmp_path)
    # Curvature for both pairs (21 cells each), training for the trained pair only.
    assert planned["curvature"] == 2 * 21 and planned["train"] == 4
    assert planned["aggregate_training"] == 1 and planned["figure_1"] == 2
    assert planned["figure_2"] == planned["figure_5"] == planned["figure_7"] == 1
    target = "results/figures/fig2_lenet5_synthetic.png"  # the job draws .pdf and .png
    proc = snakemake(tmp_path, target, check=False)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("goldilocks")]
    assert lines == [
        "goldilocks: figure 2 needs lenet5/synthetic in training.pairs (trained: "
        "lenet300100/synthetic); asked for results/figures/fig2_lenet5_synthetic.{pdf,png}"
    ]
    assert "Traceback" not in proc.stdout + proc.stderr
    # A pair that is not configured at all says so (not that it lacks LayerNorm variants).
    other = "results/figures/fig1_resnet4_synthetic.pdf"
    proc = snakemake(tmp_path, other, check=False)
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("goldilocks")]
    assert lines == [
        "goldilocks: figure 1 needs resnet4/synthetic in pairs (configured: "
        "lenet300100/synthetic, lenet5/synthetic); asked for "
        "results/figures/fig1_resnet4_synthetic.{pdf,png}"
    ]
    assert not (tmp_path / "results").exists()


def test_gpu_profile_plans_every_job(tmp_path):
    """profiles/gpu parses (its pools and per-rule resources) and plans the tiny grid."""
    write_config(tmp_path, TINY)
    profile = str(ROOT / "profiles/gpu")
    planned = dry_run_jobs(tmp_path, "--workflow-profile", profile)
    assert planned["curvature"] == 21 and planned["train"] == 4
