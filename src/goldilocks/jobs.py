"""Job entry points: what each Snakemake rule calls, by named arguments.

Each reads its inputs, asks the package to compute, builds its rows
(:mod:`goldilocks.tables`) and writes its outputs atomically (:mod:`goldilocks.io`), so
no reader ever sees a partial file under its final name. Jobs may run as threads of one
process, so every job sets its own torch threads (:func:`goldilocks.runtime.configure_torch`),
builds its own model and draws from its own generators; curvature and training jobs
enter :data:`goldilocks.runtime.PRECISION` (TF32 only while no strict-FP32 job runs).
Training jobs of one process meet in one :class:`goldilocks.batcher.Batcher`, which
trains cells of the same batch key together (:mod:`goldilocks.training_cell`,
docs/method.md section 5.7).
Checkpoints: :mod:`goldilocks.checkpoint`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence

from goldilocks import checkpoint as ckpt
from goldilocks.cells import CurvatureCell, TrainCell
from goldilocks.io import save_tensors, write_cell_table, write_parquet_atomic
from goldilocks.runtime import (
    PRECISION,
    configure_torch,
    dtype_of,
    job_log,
    resolve_device,
)


def prepare_dataset(
    *, dataset: str, output: str, log: str, mirrors: list, root: str, download: bool
) -> None:
    """Data stage: one dataset, all splits, into one tensor file, and beside it the record
    of the mirror files it was read from (:func:`goldilocks.sources.record`)."""
    from goldilocks import sources
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
        sources.record(output, sources.mirror_files(dataset, mirrors))


def init_cell(
    *, data: str, output: str, log: str, cell: Mapping, batch_size: int, subspace_dim: int
) -> None:
    """Init stage: the initial state of one seed (:func:`goldilocks.initial.draw`); a
    registered model's declared output exponent is checked against its measured one first
    (:func:`goldilocks.initial.check_output_exponent`)."""
    from goldilocks import initial
    from goldilocks.data import load_data_file

    with job_log(log) as logger:
        keys = {k: cell[k] for k in ("architecture", "dataset", "variant")}
        state = initial.draw(
            **keys,
            seed=int(cell["seed"]),
            data=load_data_file(data),
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
    log_convergence: bool = False,
    threads: int = 0,
    **settings,
) -> None:
    """Training stage: full-batch GD of one cell, one row per logged epoch.

    ``settings``: the train rule's params (see workflow/rules/train.smk; ``tf32`` and
    ``log_convergence`` are ones only when true).
    :func:`goldilocks.training_cell.train` prepares the cell and hands
    it to the process's batcher, which trains it alone or with up to ``batch_cells - 1``
    other cells of its batch key that arrive within ``batch_wait`` seconds
    (docs/method.md section 5.7); then its Parquet is written. Every ``checkpoint_every``
    epochs the state goes to ``checkpoint``, a side file that survives a kill; a rerun
    resumes from it. The checkpoint, ``batch_cells`` and ``batch_wait`` change no result
    and are not rule params (a rerun trigger).
    """
    from goldilocks import tables, training_cell

    configure_torch(threads)
    settings = {**settings, "tf32": bool(tf32), "log_convergence": bool(log_convergence)}
    with contextlib.ExitStack() as stack:
        logger = stack.enter_context(job_log(log))
        dev = resolve_device(settings["device"])  # a missing GPU: its one line in the log
        stack.enter_context(PRECISION(settings["tf32"] and dev.type == "cuda"))
        c = TrainCell.from_wildcards(cell, alpha_lr_rule=settings["alpha_lr_rule"])
        checkpointing = (checkpoint, checkpoint_every)
        batching = (batch_cells, batch_wait)
        run, clock = training_cell.train(
            init, data, c, dev, settings, checkpointing, batching, logger
        )
        write_cell_table(tables.training_rows(c, run.rows, clock()), output, "training")
        if checkpoint:
            ckpt.discard(checkpoint)
        last = run.rows[-1]
        logger.info(
            "train %s: lr=%.4g epoch %d train_acc=%.4f diverged=%s in %.1f s, batch of %d",
            *(dict(cell), c.lr, last["epoch"], last["train_acc"], last["diverged"], clock()),
            clock.cell.batch_size,
        )


def _pair_table(inits, cells, output, log, threads, build, summary) -> None:
    """A per-pair stage on its init files: ``build(states)`` (states by ``(variant,
    seed)``, ``inits[i]`` the init file of ``cells[i]``) written to ``output``, and one
    log line of ``summary(frame)`` with the row count and the time."""
    from goldilocks.initial import InitialState

    configure_torch(threads)
    with job_log(log) as logger:
        start = time.perf_counter()
        states = {c: InitialState.load(path) for path, c in zip(inits, cells, strict=True)}
        frame = build(states)
        write_parquet_atomic(frame, output)
        seconds = time.perf_counter() - start
        logger.info("%s, %d rows in %.2f s", summary(frame), len(frame), seconds)


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
    from goldilocks.output_scaling import pair_table

    arch, data = cell["architecture"], cell["dataset"]
    _pair_table(
        inits, cells, output, log, threads,
        lambda states: pair_table(arch, data, states, scales),
        lambda frame: f"kl {dict(cell)}: max KL {frame['kl'].max():.3g}",
    )  # fmt: skip


def small_alpha_pair(
    *,
    inits: Sequence[str],
    output: str,
    log: str,
    cell: Mapping,
    cells: Sequence[tuple[str, int]],
    alphas: Mapping[str, Sequence[float]],
    threads: int = 0,
) -> None:
    """Small-alpha side table (docs/method.md section 2.3):
    :func:`goldilocks.output_scaling.small_alpha_table` of one pair; ``inits[i]`` is the
    init file of ``cells[i] = (variant, seed)``; the log names each variant's declared
    and measured m."""
    from goldilocks.output_scaling import small_alpha_table

    def summary(frame) -> str:
        m = frame.groupby("variant")[["declared_m", "measured_m"]].mean().round(3)
        return f"small_alpha {dict(cell)}: m declared/measured {m.to_dict('index')}"

    arch, data = cell["architecture"], cell["dataset"]
    _pair_table(
        inits, cells, output, log, threads,
        lambda states: small_alpha_table(arch, data, states, alphas), summary,
    )  # fmt: skip
