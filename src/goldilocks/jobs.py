"""Job entry points: what each Snakemake rule calls, by named arguments.

Each reads its inputs, asks the package to compute, builds its rows
(:mod:`goldilocks.tables`) and writes its outputs atomically (:mod:`goldilocks.io`), so
no reader ever sees a partial file under its final name. Jobs may run as threads of one
process, so every job sets its own torch threads (:func:`goldilocks.runtime.configure_torch`),
builds its own model and draws from its own generators; curvature and training jobs
enter :data:`goldilocks.runtime.PRECISION` (TF32 only while no strict-FP32 job runs).
Training jobs of one process meet in one :class:`goldilocks.batched.Batcher`, which
trains cells of the same :func:`batch_key` together (docs/method.md section 5.7).
Checkpoints: :mod:`goldilocks.checkpoint`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence

import torch

from goldilocks import checkpoint as ckpt
from goldilocks.batched import Batcher, Cell, Shared
from goldilocks.cells import CurvatureCell, TrainCell
from goldilocks.io import load_tensors, save_tensors, write_cell_table, write_parquet_atomic
from goldilocks.runtime import (
    PRECISION,
    configure_torch,
    dtype_of,
    job_log,
    resolve_device,
    shared_value,
)


def prepare_dataset(
    *, dataset: str, output: str, log: str, mirrors: list, root: str, download: bool
) -> None:
    """Data stage: one dataset, all splits, into one tensor file."""
    from goldilocks.data import TEST_CIFAR10_ENV, cifar_test_class, prepare

    with job_log(log) as logger:
        start = time.perf_counter()
        cifar_class = cifar_test_class() if dataset == "cifar10" else None
        if cifar_class is not None:
            logger.warning("%s set: reading CIFAR-10 with %s", TEST_CIFAR10_ENV, cifar_class)
        data = prepare(dataset, mirrors, root, download, cifar_class)
        sizes = {k: tuple(v.shape) for k, v in data.items()}
        logger.info("prepared %s: %s in %.1f s", dataset, sizes, time.perf_counter() - start)
        save_tensors(data, output)


def init_cell(
    *, data: str, output: str, log: str, cell: Mapping, batch_size: int, subspace_dim: int
) -> None:
    """Init stage: the initial state of one seed (:func:`goldilocks.initial.draw`); a
    registered model's declared output exponent is checked against its measured one first
    (:func:`goldilocks.initial.check_output_exponent`)."""
    from goldilocks import initial

    with job_log(log) as logger:
        keys = {k: cell[k] for k in ("architecture", "dataset", "variant")}
        state = initial.draw(
            **keys,
            seed=int(cell["seed"]),
            data=load_tensors(data),
            batch_size=batch_size,
            subspace_dim=subspace_dim,
        )
        measured = initial.check_output_exponent(state, **keys)  # registered models only
        if measured is not None:
            logger.info("output exponent %s: measured %.3f", dict(cell), measured)
        state.save(output)
        n_params = state.projection.n_params
        logger.info("init %s: P=%d, batch %s", dict(cell), n_params, tuple(state.batch_x.shape))


def curvature_cell(
    *,
    init: str,
    output: str,
    layers: str,
    log: str,
    cell: Mapping,
    dtype: str,
    device: str,
    hvp_method: str,
    jvp_method: str,
    threads: int = 0,
) -> None:
    """Curvature stage: the metrics of one cell (one row) and its layer ratios."""
    from goldilocks import curvature, initial, tables

    configure_torch(threads)
    with job_log(log) as logger, PRECISION(False):  # strict FP32, whatever training does
        start = time.perf_counter()
        c = CurvatureCell.from_wildcards(cell)
        dev = resolve_device(device)
        state = initial.InitialState.load(init)
        keys = (c.architecture, c.dataset, c.variant, c.alpha, c.temperature)
        problem = initial.problem(state, *keys, dev, dtype_of(dtype))
        methods = curvature.resolve_methods(hvp_method, jvp_method, dev, problem.params)
        metrics, ratios = curvature.measure(problem, *methods)
        seconds = time.perf_counter() - start
        n_params = state.projection.n_params
        row = tables.curvature_row(c, n_params, metrics, dtype, dev.type, seconds)
        write_cell_table(tables.layer_ratio_rows(c, ratios), layers, "layer_ratios")
        write_cell_table(row, output, "curvature")
        logger.info(
            "curvature %s: Tr/||H||_F=%.4g in %.2f s",
            dict(cell),
            metrics["hessian_trace_ratio"],
            seconds,
        )


#: The engine of a batch of training cells (:func:`goldilocks.batched.batch_method`):
#: ``auto`` = ``vmap`` on a GPU, ``loop`` on the CPU.
TRAIN_METHOD = "auto"

_BATCHERS: dict[tuple[int, float], Batcher] = {}
_BATCHERS_LOCK = threading.Lock()


def batcher(max_cells: int, wait_s: float) -> Batcher:
    """The process's :class:`~goldilocks.batched.Batcher` for ``training.batch_cells``
    and ``training.batch_wait``: every train job of a run, each a thread of the one
    Snakemake process, hands its cell to the same one."""
    with _BATCHERS_LOCK:
        if (max_cells, wait_s) not in _BATCHERS:
            _BATCHERS[(max_cells, wait_s)] = Batcher(max_cells, wait_s)
        return _BATCHERS[(max_cells, wait_s)]


def batch_key(cell: TrainCell, device: torch.device, settings: Mapping, own_data: bool) -> tuple:
    """What the cells trained together share (docs/method.md section 5.7): architecture,
    dataset, variant, device, the settings of the resume key (dtype, epochs, log_every,
    both subset sizes, chunk size, curvature_every, tf32; :data:`RESUME_SETTINGS
    <goldilocks.checkpoint.RESUME_SETTINGS>`), and the seed whenever a training or test
    subset is set (the subsets are drawn from the seed) or ``own_data`` (a registered
    model's buffers, saved per seed). Everything else (alpha, T, rate, the
    initialisation) is the cell's own."""
    subset = settings["train_subset"] or settings["test_subset"]
    return (
        cell.architecture,
        cell.dataset,
        cell.variant,
        str(device),
        *(settings[k] for k in ckpt.RESUME_SETTINGS),
        cell.seed if subset or own_data else None,
    )


class _Clock:
    """A training cell's ``compute_seconds`` (docs/method.md section 5.7): the time spent
    before it resumed (stored in its checkpoint), its own time in this job outside the
    batcher, and its equal share of its batch's training time
    (:meth:`goldilocks.batched.Cell.seconds`). Waiting for a batch to form is not counted."""

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
    from goldilocks.data import training_data

    subsets = (settings["train_subset"], settings["test_subset"])
    dtype = dtype_of(settings["dtype"])
    seed_or_none = seed if any(subsets) else None
    stamp = (os.path.realpath(path), os.stat(path).st_mtime_ns)
    key = ("training data", *stamp, seed_or_none, *subsets, dtype, str(device))
    return key, lambda: training_data(load_tensors(path), seed, *subsets, dtype, device)


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
    shared = Shared(problem.model, *data, *schedule, method=TRAIN_METHOD)
    return batch_key(c, device, settings, own_data=bool(state.buffers)), cell, shared


def train_cell(
    *,
    init: str,
    data: str,
    output: str,
    log: str,
    cell: Mapping,
    checkpoint: str | None = None,
    checkpoint_every: int | None = None,
    batch_cells: int = 1,
    batch_wait: float = 5.0,
    tf32: bool = False,
    threads: int = 0,
    **settings,
) -> None:
    """Training stage: full-batch GD of one cell, one row per logged epoch.

    ``settings``: the train rule's params (see workflow/rules/train.smk; ``tf32`` is one
    only when true). The cell is prepared here and handed to the process's
    :func:`batcher`, which trains it alone or with up to ``batch_cells - 1`` other cells
    of its :func:`batch_key` that arrive within ``batch_wait`` seconds (docs/method.md
    section 5.7); then its Parquet is written. Every ``checkpoint_every`` epochs the state
    goes to ``checkpoint``, a side file that survives a kill; a rerun resumes from it
    (:mod:`goldilocks.checkpoint`). The checkpoint, ``batch_cells`` and ``batch_wait``
    change no result and are not rule params (a rerun trigger).
    """
    from goldilocks import tables

    configure_torch(threads)
    settings = {**settings, "tf32": bool(tf32)}
    dev = resolve_device(settings["device"])
    with job_log(log) as logger, PRECISION(settings["tf32"] and dev.type == "cuda"):
        clock = _Clock()
        c = TrainCell.from_wildcards(cell, alpha_lr_rule=settings["alpha_lr_rule"])
        with shared_value(*_training_data(data, c.seed, dev, settings)) as pair:
            prepared = (init, c, dev, pair, checkpoint, checkpoint_every, settings, clock)
            key, clock.cell, shared = _prepare_training(*prepared, logger)
            clock.entered = time.perf_counter()
            run = batcher(batch_cells, batch_wait).train(key, clock.cell, shared)
            clock.left = time.perf_counter()
        write_cell_table(tables.training_rows(c, run.rows, clock()), output, "training")
        if checkpoint:
            ckpt.discard(checkpoint)
        last = run.rows[-1]
        logger.info(
            "train %s: lr=%.4g epoch %d train_acc=%.4f diverged=%s in %.1f s, batch of %d",
            *(dict(cell), c.lr, last["epoch"], last["train_acc"], last["diverged"], clock()),
            clock.cell.batch_size,
        )


def kl_pair(
    *,
    inits: Sequence[str],
    output: str,
    log: str,
    cell: Mapping,
    cells: Sequence[tuple[str, int]],
    scales: Mapping,
    threads: int = 0,
) -> None:
    """KL stage (figure 3): :func:`goldilocks.output_scaling.pair_table` of one pair's
    LayerNorm variants; ``inits[i]`` is the init file of ``cells[i] = (variant, seed)``."""
    from goldilocks.initial import InitialState
    from goldilocks.output_scaling import pair_table

    configure_torch(threads)
    with job_log(log) as logger:
        start = time.perf_counter()
        states = {c: InitialState.load(path) for path, c in zip(inits, cells, strict=True)}
        frame = pair_table(cell["architecture"], cell["dataset"], states, scales)
        write_parquet_atomic(frame, output)
        seconds = time.perf_counter() - start
        kl_max = frame["kl"].max()
        logger.info(
            "kl %s: max KL %.3g, %d rows in %.2f s", dict(cell), kl_max, len(frame), seconds
        )
