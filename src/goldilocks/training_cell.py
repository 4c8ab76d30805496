"""A training job between reading its inputs and writing its rows: the cell's data
(shared by the jobs that run at the same time on it), its problem, checkpoint and
curvature probe, its batch key, and the clock of its ``compute_seconds``; the cell is
handed to the process's :class:`goldilocks.batcher.Batcher` (docs/method.md section 5.7).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping

import torch

from goldilocks import checkpoint as ckpt
from goldilocks.batcher import Batcher, Cell, Shared
from goldilocks.cells import TrainCell
from goldilocks.runtime import dtype_of, shared_value

#: The engine of a batch of training cells (:func:`goldilocks.engines.batch_method`):
#: ``auto`` = ``vmap`` on a GPU, ``loop`` on the CPU.
TRAIN_METHOD = "auto"

_BATCHERS: dict[tuple[int, float], Batcher] = {}
_BATCHERS_LOCK = threading.Lock()


def batcher(max_cells: int, wait_s: float) -> Batcher:
    """The process's :class:`~goldilocks.batcher.Batcher` for ``training.batch_cells``
    and ``training.batch_wait``: every train job of a run, each a thread of the one
    Snakemake process, hands its cell to the same one."""
    with _BATCHERS_LOCK:
        if (max_cells, wait_s) not in _BATCHERS:
            _BATCHERS[(max_cells, wait_s)] = Batcher(max_cells, wait_s)
        return _BATCHERS[(max_cells, wait_s)]


def batch_key(cell: TrainCell, device: torch.device, settings: Mapping, own_data: bool) -> tuple:
    """What the cells trained together share (docs/method.md section 5.7): architecture,
    dataset, variant, device, the settings of the resume key (dtype, epochs, log_every,
    both subset sizes, chunk size, curvature_every, tf32, log_convergence; :data:`RESUME_SETTINGS
    <goldilocks.checkpoint.RESUME_SETTINGS>`), and the seed whenever a training or test
    subset is set (the subsets are drawn from the seed) or ``own_data`` (a registered
    model's buffers, saved per seed). Everything else (alpha, T, rate, the
    initialisation) is the cell's own."""
    return (
        cell.architecture,
        cell.dataset,
        cell.variant,
        str(device),
        *(settings[k] for k in ckpt.RESUME_SETTINGS),
        cell.seed if own_data else _data_seed(cell.seed, settings),
    )


def _data_seed(seed: int, settings: Mapping) -> int | None:
    """The seed a cell's training and test data depend on: its own when a subset is
    drawn (``train_subset`` or ``test_subset``), else None (every seed, the same data)."""
    return seed if settings["train_subset"] or settings["test_subset"] else None


class Clock:
    """A training cell's ``compute_seconds`` (docs/method.md section 5.7): the time spent
    before it resumed (stored in its checkpoint), its own time in this job outside the
    batcher, and its equal share of its batch's training time
    (:meth:`goldilocks.batcher.Cell.seconds`). Waiting for a batch to form is not counted."""

    def __init__(self) -> None:
        self.before, self.start = 0.0, time.perf_counter()
        self.cell: Cell | None = None
        self.entered: float | None = None
        self.left: float | None = None

    def __call__(self) -> float:
        now = time.perf_counter()
        if self.entered is None or self.cell is None:
            return self.before + now - self.start
        after = 0.0 if self.left is None else now - self.left
        return self.before + (self.entered - self.start) + self.cell.seconds() + after


def _training_data(path: str, seed: int, device: torch.device, settings: Mapping):
    """The :func:`~goldilocks.runtime.shared_value` key and builder of a cell's training
    and test data: jobs that run at the same time on the same data share one copy (the
    cells of a batch wait in their own threads; on a GPU a copy each would add up)."""
    from goldilocks.data import load_data_file, training_data

    subsets = (settings["train_subset"], settings["test_subset"])
    dtype = dtype_of(settings["dtype"])
    stamp = (os.path.realpath(path), os.stat(path).st_mtime_ns)
    key = ("training data", *stamp, _data_seed(seed, settings), *subsets, dtype, str(device))
    return key, lambda: training_data(load_data_file(path), seed, *subsets, dtype, device)


def _on_epoch(cell: Cell, save, logger) -> Callable:
    """The cell's ``on_epoch``: its first call logs the batch the cell trains in (so the
    log tells while training, not only at the end), every call checkpoints (``save``)."""
    told = False

    def on_epoch(state) -> None:
        nonlocal told
        if not told:
            logger.info(
                "training in a batch of %d cells from epoch %d", cell.batch_size, state.epoch - 1
            )
            told = True
        if save is not None:
            save(state)

    return on_epoch


def _prepare_training(init, c, device, data, checkpoint, every, settings, clock, logger):
    """A training cell ready for the batcher: its batch key, :class:`Cell` (initial or
    resumed state, alpha, T, rate, checkpoint callback, curvature probe) and
    :class:`Shared` (its own model, the data, the schedule)."""
    from goldilocks import curvature, initial
    from goldilocks.training import TrainState

    state = initial.InitialState.load(init)
    keys = (c.architecture, c.dataset, c.variant, c.alpha, c.temperature)
    problem = initial.problem(state, *keys, device, dtype_of(settings["dtype"]))  # own model
    key = ckpt.resume_key(state.checksum(), c.alpha, c.temperature, c.lr, device, settings)
    resumed = ckpt.load(checkpoint, key, device, logger) if checkpoint else None
    run, clock.before = resumed or (TrainState(problem.params), 0.0)
    methods = (settings["hvp_method"], settings["jvp_method"])
    methods = curvature.resolve_methods(*methods, device, state.params)
    cell = Cell(run, c.temperature, c.lr, probe=curvature.probe(problem, *methods))
    save = ckpt.saver(checkpoint, key, every, settings["epochs"], clock, logger)
    cell.on_epoch = _on_epoch(cell, save, logger)
    schedule = (settings[k] for k in ("epochs", "log_every", "chunk_size", "curvature_every"))
    dense = settings["log_convergence"]
    shared = Shared(problem.model, *data, *schedule, method=TRAIN_METHOD, dense=dense)
    return batch_key(c, device, settings, own_data=bool(state.buffers)), cell, shared


def train(init, data, c: TrainCell, device, settings, checkpointing, batching, logger):
    """Prepare the cell, hand it to the process's batcher and wait for its history.

    Args:
        checkpointing: ``(path or None, every or None)``.
        batching: ``(batch_cells, batch_wait)``.

    Returns:
        ``(state, clock)``: the cell's final :class:`~goldilocks.training.TrainState` and
        its :class:`Clock` (call it for ``compute_seconds``; ``clock.cell`` the batch's
        :class:`~goldilocks.batcher.Cell`).
    """
    clock = Clock()
    with shared_value(*_training_data(data, c.seed, device, settings)) as pair:
        prepared = (init, c, device, pair, *checkpointing, settings, clock)
        key, clock.cell, shared = _prepare_training(*prepared, logger)
        clock.entered = time.perf_counter()
        run = batcher(*batching).train(key, clock.cell, shared)
        clock.left = time.perf_counter()
    return run, clock
