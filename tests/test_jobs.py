"""Job entry points on the real synthetic data: determinism, checkpoints and resumption,
cells batched by their job threads."""

from __future__ import annotations

import functools
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import in_threads
from test_batched import F32_RTOL

from goldilocks import jobs, training_cell

KEYS = {"architecture": "lenet300100", "dataset": "synthetic", "variant": "homogeneous"}
TRAIN = {
    "dtype": "float32",
    "device": "cpu",
    "epochs": 12,
    "log_every": 4,
    "train_subset": 128,
    "test_subset": 64,
    "chunk_size": None,
    "alpha_lr_rule": "paper",
    # Curvature along training at every logged epoch: resumed and concurrent cells must
    # reproduce these columns too.
    "curvature_every": 4,
    "hvp_method": "loop",
    "jvp_method": "auto",
}
CURVATURE = {"dtype": "float32", "device": "cpu", "hvp_method": "loop", "jvp_method": "auto"}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[str, str]:
    """The synthetic data file and one init file (seed 0)."""
    root = tmp_path_factory.mktemp("inputs")
    data, init = str(root / "synthetic.pt"), str(root / "init.pt")
    jobs.prepare_dataset(
        dataset="synthetic",
        output=data,
        log=str(root / "data.log"),
        mirrors=[],
        root=str(root),
        download=False,
    )
    jobs.init_cell(
        data=data,
        output=init,
        log=str(root / "init.log"),
        cell={**KEYS, "seed": "0"},
        batch_size=16,
        subspace_dim=6,
    )
    return data, init


def train(
    inputs, out: Path, scale="1", lr_base="0.1", every=None, checkpoint=None, **changes
) -> pd.DataFrame:
    keys = {**KEYS, "scaling": "temperature", "scale": scale, "lr_base": lr_base, "seed": "0"}
    jobs.train_cell(
        init=inputs[1],
        data=inputs[0],
        output=str(out),
        log=str(out.with_suffix(".log")),
        cell=keys,
        checkpoint=checkpoint,
        checkpoint_every=every,
        threads=1,
        **{**TRAIN, **changes},
    )
    return pd.read_parquet(out)


def curvature(inputs, out: Path, scale="1") -> pd.DataFrame:
    keys = {**KEYS, "scaling": "alpha", "scale": scale, "seed": "0"}
    jobs.curvature_cell(
        init=inputs[1],
        output=str(out),
        layers=str(out.with_suffix(".layers.parquet")),
        log=str(out.with_suffix(".log")),
        cell=keys,
        threads=1,
        **CURVATURE,
    )
    return pd.read_parquet(out)


def same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Equal to the bit in every column but the wall-clock time."""
    pd.testing.assert_frame_equal(
        a.drop(columns="compute_seconds"), b.drop(columns="compute_seconds"), check_exact=True
    )


def test_a_cell_twice_gives_identical_rows(inputs, tmp_path):
    same(train(inputs, tmp_path / "a.parquet"), train(inputs, tmp_path / "b.parquet"))
    same(curvature(inputs, tmp_path / "c.parquet"), curvature(inputs, tmp_path / "d.parquet"))


def test_cells_next_to_each_other_equal_cells_alone(inputs, tmp_path):
    alone = [train(inputs, tmp_path / "t.parquet"), curvature(inputs, tmp_path / "c.parquet")]
    runs = [
        lambda: train(inputs, tmp_path / "t2.parquet"),
        lambda: curvature(inputs, tmp_path / "c2.parquet"),
        lambda: train(inputs, tmp_path / "t3.parquet", scale="10"),
        lambda: curvature(inputs, tmp_path / "c3.parquet", scale="10"),
    ]
    assert not [r for r in in_threads(runs) if isinstance(r, BaseException)]
    same(alone[0], pd.read_parquet(tmp_path / "t2.parquet"))
    same(alone[1], pd.read_parquet(tmp_path / "c2.parquet"))


def killed_before_write(inputs, out: Path, checkpoint: Path, every: int, monkeypatch, **changes):
    """Train until the result would be written, and die there (like a SIGKILL)."""

    def die(frame, path, kind):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(jobs, "write_cell_table", die)
        with pytest.raises(KeyboardInterrupt):
            train(inputs, out, every=every, checkpoint=checkpoint, **changes)


def test_resumed_training_equals_an_uninterrupted_run(inputs, tmp_path, monkeypatch):
    reference = train(inputs, tmp_path / "ref.parquet")
    checkpoint = tmp_path / "ckpt" / "cell.pt"
    killed_before_write(inputs, tmp_path / "cell.parquet", checkpoint, 5, monkeypatch)
    assert checkpoint.exists()  # the last one, epoch 10 of 12
    resumed = train(inputs, tmp_path / "cell.parquet", every=5, checkpoint=checkpoint)
    assert "checkpoint: resumed from" in (tmp_path / "cell.log").read_text()
    assert "at epoch 10" in (tmp_path / "cell.log").read_text()
    same(reference, resumed)
    assert not checkpoint.exists()  # removed once the result is written


@pytest.mark.parametrize(
    ("change", "value"), [("epochs", 16), ("train_subset", 96), ("dtype", "float64")]
)
def test_a_stale_checkpoint_is_discarded(inputs, tmp_path, monkeypatch, change, value):
    checkpoint = tmp_path / "cell.pt"
    killed_before_write(inputs, tmp_path / "cell.parquet", checkpoint, 5, monkeypatch)
    changed = train(
        inputs, tmp_path / "cell.parquet", every=5, checkpoint=checkpoint, **{change: value}
    )
    log = (tmp_path / "cell.log").read_text()
    assert "checkpoint: discarded stale" in log and change in log
    assert "resumed" not in log
    same(changed, train(inputs, tmp_path / "fresh.parquet", **{change: value}))


def test_an_unreadable_checkpoint_is_discarded(inputs, tmp_path):
    checkpoint = tmp_path / "cell.pt"
    checkpoint.write_bytes(b"PK\x03\x04 truncated")
    result = train(inputs, tmp_path / "cell.parquet", every=5, checkpoint=checkpoint)
    assert "checkpoint: discarded unreadable" in (tmp_path / "cell.log").read_text()
    same(result, train(inputs, tmp_path / "fresh.parquet"))
    assert not checkpoint.exists()


def test_divergence_is_recorded_and_leaves_no_checkpoint(inputs, tmp_path):
    checkpoint = tmp_path / "cell.pt"
    # eta0 = 1000 at T = 1: the loss is finite at epochs 0-2 (checkpoints 1 and 2 are
    # saved) and non-finite at epoch 3.
    rows = train(inputs, tmp_path / "cell.parquet", lr_base="1000", every=1, checkpoint=checkpoint)
    assert rows["epoch"].tolist() == [0, 3]
    assert rows["diverged"].all() and (rows["diverged_epoch"] == 3).all()
    assert rows["train_loss"].isna().tolist() == [False, True]
    assert "checkpoint: saved epoch 2" in (tmp_path / "cell.log").read_text()
    assert not checkpoint.exists()


#: (scale, lr_base) of four cells of one batch key: different T and rates, one diverging
#: (eta0 = 1000 at T = 1: non-finite at epoch 3).
BATCH = [("1", "0.1"), ("10", "0.1"), ("0.1", "0.1"), ("1", "1000")]
#: Per engine, the settings the batch is compared in. ``vmap`` without curvature along
#: training: its H-term is a difference of nearly equal matrices, whose float32 rounding
#: the stacked kernels change by up to 1.8e-5 relative on these cells (the losses by
#: 1.6e-7), so it is compared on the losses, accuracies and divergence only.
ENGINE = {"loop": {}, "vmap": {"curvature_every": 0}}


def train_together(inputs, folder: Path, checkpoints: Path | None = None, **changes) -> list:
    """The cells of :data:`BATCH` as concurrent job threads (as under
    ``--force-use-threads``) with ``batch_cells=4``, each with its checkpoint in
    ``checkpoints`` (every 5 epochs) when given: their tables, or the error raised."""

    def job(i, scale, lr_base):
        run = {**changes, "batch_cells": 4, "batch_wait": 60}
        if checkpoints is not None:
            run.update(every=5, checkpoint=str(checkpoints / f"cell{i}.pt"))
        return train(inputs, folder / f"cell{i}.parquet", scale, lr_base, **run)

    return in_threads([functools.partial(job, i, *c) for i, c in enumerate(BATCH)])


def alike(a: pd.DataFrame, b: pd.DataFrame, method: str) -> None:
    """``loop``: equal to the bit; ``vmap``: within the float32 tolerance of
    tests/test_batched.py (2e-5 relative; accuracies equal on these cells)."""
    if method == "loop":
        same(a, b)
        return
    pd.testing.assert_frame_equal(
        a.drop(columns="compute_seconds"),
        b.drop(columns="compute_seconds"),
        check_exact=False,
        rtol=F32_RTOL,
        atol=0.0,
    )


def alone_cells(inputs, folder: Path, monkeypatch, method: str) -> tuple[dict, list]:
    """Batches to come use the engine ``method``: its settings (:data:`ENGINE`), and the
    cells of :data:`BATCH` each trained alone in them."""
    monkeypatch.setattr(training_cell, "TRAIN_METHOD", method)
    settings = ENGINE[method]
    alone = [
        train(inputs, folder / f"alone{i}.parquet", *c, **settings) for i, c in enumerate(BATCH)
    ]
    return settings, alone


@pytest.mark.parametrize("method", ["loop", "vmap"])
def test_cells_batched_by_their_job_threads_equal_cells_alone(
    inputs, tmp_path, monkeypatch, method
):
    settings, alone = alone_cells(inputs, tmp_path, monkeypatch, method)
    assert alone[3]["diverged"].all() and not any(t["diverged"].any() for t in alone[:3])
    together = train_together(inputs, tmp_path, **settings)
    for got, want in zip(together, alone, strict=True):
        alike(got, want, method)
    logs = [(tmp_path / f"cell{i}.log").read_text() for i in range(len(BATCH))]
    assert all("training in a batch of 4 cells from epoch 0" in log for log in logs)
    assert all(t["compute_seconds"].gt(0).all() for t in together)


@pytest.mark.parametrize("method", ["loop", "vmap"])
def test_a_batch_killed_before_its_writes_resumes_from_per_cell_checkpoints(
    inputs, tmp_path, monkeypatch, method
):
    settings, alone = alone_cells(inputs, tmp_path, monkeypatch, method)
    saved = tmp_path / "ckpt"

    def die(frame, path, kind):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(jobs, "write_cell_table", die)
        killed = train_together(inputs, tmp_path, saved, **settings)
    assert all(isinstance(r, KeyboardInterrupt) for r in killed)
    kept = sorted(saved.glob("*.pt"))  # the diverged cell (epoch 3) saved none at 5, 10
    assert [p.name for p in kept] == ["cell0.pt", "cell1.pt", "cell2.pt"]
    for path in kept:  # one cell's parameters each, not the batch's stacked tensors
        params = torch.load(path, weights_only=True)["params"]
        assert all(v.untyped_storage().nbytes() == v.numel() * 4 for v in params.values())
    resumed = train_together(inputs, tmp_path, saved, **settings)
    for i, (got, want) in enumerate(zip(resumed, alone, strict=True)):
        alike(got, want, method)
        log = (tmp_path / f"cell{i}.log").read_text()
        assert ("resumed from" in log and "at epoch 10" in log) == (i < 3)
    assert not list(saved.glob("*.pt"))
