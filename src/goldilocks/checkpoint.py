"""Training checkpoints that survive a kill: the resume key, save, load, discard.

A training cell saves its state every ``training.checkpoint_every`` epochs to a side file
(``results/checkpoints/<cell keys>.pt``) that Snakemake does not know as an output, so it
is not deleted when the job dies. A rerun continues from it only if it was saved for the
same key (:func:`resume_key`: initialisation checksum, alpha, T, learning rate, device and
the training settings that change the history, TF32 among them); otherwise the file is
discarded and the cell starts over. The file is removed once the cell's Parquet is
written. GD is a pure function of the parameters, so a resumed cell ends with the same
rows, to the bit, as an uninterrupted one on the same device and thread count (a cell
trained in a ``vmap`` batch: within float32 rounding, docs/method.md section 5.7).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from goldilocks.io import load_tensors, save_tensors
from goldilocks.training import TrainState

#: Training settings a checkpoint must share with the job that continues it.
RESUME_SETTINGS = (
    "dtype",
    "epochs",
    "log_every",
    "train_subset",
    "test_subset",
    "chunk_size",
    "curvature_every",
    "tf32",
    "log_convergence",
)


def resume_key(
    init_checksum: int,
    alpha: float,
    temperature: float,
    lr: float,
    device: torch.device,
    settings: Mapping,
) -> dict:
    """What a checkpoint must have been saved for to be continued by a job."""
    return {
        "init": init_checksum,
        "alpha": alpha,
        "temperature": temperature,
        "lr": lr,
        "device": device.type,
        **{k: settings[k] for k in RESUME_SETTINGS},
    }


def save(path: str | os.PathLike, key: Mapping, state: TrainState, seconds: float) -> None:
    """Write ``state`` (parameters, next epoch, rows so far) for ``key``, atomically.

    ``seconds``: compute time spent up to this state (added to the resumed cell's time).
    The parameters are copied: a cell trained in a ``vmap`` batch
    (:func:`goldilocks.training.train_batched`) hands in views into the batch's stacked
    tensors, and ``torch.save`` writes a view's whole storage, i.e. every cell of the
    batch (``.cpu()`` alone copies nothing on the CPU).
    """
    params = {k: v.detach().to("cpu", copy=True) for k, v in state.params.items()}
    saved = {"key": dict(key), "epoch": state.epoch, "rows": state.rows, "seconds": seconds}
    save_tensors({**saved, "params": params}, path)


def load(
    path: str | os.PathLike, key: Mapping, device: torch.device, logger: logging.Logger
) -> tuple[TrainState, float] | None:
    """The state saved at ``path`` if it was saved for ``key``, else ``None``.

    A checkpoint of another key, or one that cannot be read, is discarded with a log line.

    Returns:
        ``(state, seconds)``: the state and the compute time spent before it, or ``None``.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        saved = load_tensors(path)
    except Exception as err:  # unreadable (e.g. truncated on disk): start over
        logger.info("checkpoint: discarded unreadable %s (%s)", path, err)
        discard(path)
        return None
    saved_key = saved.get("key", {})
    if saved_key != dict(key):
        diff = {k: (saved_key.get(k), v) for k, v in key.items() if saved_key.get(k) != v}
        logger.info("checkpoint: discarded stale %s, saved for other settings %s", path, diff)
        discard(path)
        return None
    params = {k: v.to(device) for k, v in saved["params"].items()}
    logger.info("checkpoint: resumed from %s at epoch %d", path, saved["epoch"])
    return TrainState(params, saved["epoch"], saved["rows"]), saved["seconds"]


def discard(path: str | os.PathLike) -> None:
    """Remove a checkpoint (a finished cell's, or a stale one)."""
    Path(path).unlink(missing_ok=True)


def saver(
    path: str | os.PathLike | None,
    key: Mapping,
    every: int | None,
    epochs: int,
    seconds: Callable[[], float],
    logger: logging.Logger,
) -> Callable[[TrainState], None] | None:
    """The ``on_epoch`` callback of :func:`goldilocks.training.train` that saves every
    ``every`` epochs before the last (``None`` without a path or ``every``).

    ``seconds()``: the compute time spent so far, stored with the state.
    """
    if not path or not every:
        return None

    def save_every(state: TrainState) -> None:
        if state.epoch % every or state.epoch >= epochs:
            return
        save(path, key, state, seconds())
        logger.info("checkpoint: saved epoch %d", state.epoch)

    return save_every
