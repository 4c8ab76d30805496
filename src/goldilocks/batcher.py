"""Where training jobs meet to train their cells together (docs/method.md section 5.7).

Jobs running as threads of one process hand their cell to the process's :class:`Batcher`
and block; the first of a batch waits for ``max_cells`` cells of the same key or a short
time, then trains them all with :func:`goldilocks.training.train_batched` (a batch of one:
:func:`goldilocks.training.train`). This module only coordinates threads; the epoch loop
is :mod:`goldilocks.training`'s, its arithmetic :mod:`goldilocks.engines`' and the
``chunk_size: auto`` sizing :mod:`goldilocks.memory`'s.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import torch
from torch import Tensor

from goldilocks.engines import Params
from goldilocks.memory import resolve_chunk_size
from goldilocks.runtime import FailedElsewhere
from goldilocks.training import TrainState, train_batched


@dataclass
class Cell:
    """One cell handed to a :class:`Batcher`: its state, its own settings and callbacks.

    The batcher records when the cell's batch started and finished training and how
    many cells it held (``started``, ``finished``, ``batch_size``), for :meth:`seconds`.
    """

    state: TrainState
    temperature: float
    lr: float
    on_epoch: Callable[[TrainState], None] | None = None
    probe: Callable[[Params], dict] | None = None
    started: float | None = None
    finished: float | None = None
    batch_size: int = 0

    def seconds(self) -> float:
        """The cell's share of its batch's training time so far: the batch's wall time
        (``time.perf_counter``) since it started, divided equally among its cells
        (docs/method.md section 5.7); 0 before the batch starts."""
        if self.started is None:
            return 0.0
        end = time.perf_counter() if self.finished is None else self.finished
        return (end - self.started) / self.batch_size


@dataclass(frozen=True)
class Shared:
    """What the cells of one batch share; the batch's leader trains with its own copy.

    ``chunk_size="auto"`` is resolved for the batch's size by
    :func:`goldilocks.memory.auto_chunk_size` once the batch is closed.
    """

    model: torch.nn.Module
    train_data: tuple[Tensor, Tensor]
    test_data: tuple[Tensor, Tensor]
    epochs: int
    log_every: int
    chunk_size: int | str | None = None
    probe_every: int = 0
    method: str = "auto"
    dense: bool = False


class _Batch:
    def __init__(self) -> None:
        self.cells: list[Cell] = []
        self.full = threading.Event()
        self.done = threading.Event()
        self.error: BaseException | None = None


class Batcher:
    """Where jobs running as threads of one process meet to train their cells together.

    ``batcher.train(key, cell, shared)`` blocks until ``cell`` is trained and returns its
    final state. Cells of equal ``key`` join the same open batch, so the key must name
    everything they share (architecture, variant, dataset, training and test subsets,
    epochs, log_every, log_convergence, dtype, device, chunk size, curvature_every, TF32,
    and the seed
    where the data or a model's buffers depend on it: :func:`goldilocks.training_cell.batch_key`).
    The first cell's
    thread leads: it waits until the batch holds ``max_cells`` cells or ``wait_s``
    seconds have passed, closes it, and trains every cell of it with its own ``shared``
    (model and data), while the other threads wait for their results. A batch of one
    cell runs :func:`goldilocks.training.train`, bit for bit today's path, so
    ``max_cells=1`` changes nothing. An error in any cell (a callback that raises) fails
    every cell of its batch.

    Attributes:
        sizes: the size of every batch run so far, in order of start.
    """

    def __init__(self, max_cells: int, wait_s: float = 5.0) -> None:
        if max_cells < 1:
            raise ValueError(f"batch_cells: must be at least 1, got {max_cells}")
        self.max_cells, self.wait_s = max_cells, wait_s
        self.sizes: list[int] = []
        self._lock = threading.Lock()
        self._open: dict[Hashable, _Batch] = {}

    def train(self, key: Hashable, cell: Cell, shared: Shared) -> TrainState:
        with self._lock:
            batch = self._open.get(key)
            leader = batch is None
            if leader:
                batch = self._open[key] = _Batch()
            batch.cells.append(cell)
            if len(batch.cells) >= self.max_cells:
                del self._open[key]  # closed: the next cell of this key opens a new one
                batch.full.set()
        if not leader:
            batch.done.wait()
            if batch.error is not None:
                context = f"the batch of {len(batch.cells)} cells this cell trained in failed"
                raise FailedElsewhere(context, batch.error) from batch.error
            return cell.state
        batch.full.wait(self.wait_s)
        with self._lock:
            if self._open.get(key) is batch:
                del self._open[key]
            self.sizes.append(len(batch.cells))
        started = time.perf_counter()
        for c in batch.cells:
            c.started, c.batch_size = started, len(batch.cells)
        try:
            _run(batch.cells, shared)
        except BaseException as err:
            batch.error = err
            raise
        finally:
            finished = time.perf_counter()
            for c in batch.cells:
                c.finished = finished
            batch.done.set()
        return cell.state


def _run(cells: list[Cell], shared: Shared) -> None:
    """Train ``cells`` (one batch) in place of their states; a batch of one with the
    ``loop`` engine (:func:`goldilocks.training.train`, whatever ``shared.method``)."""
    chunk = resolve_chunk_size(shared.chunk_size, shared.model, shared.train_data[0], len(cells))

    def on_epoch(i: int, state: TrainState) -> None:
        if cells[i].on_epoch is not None:
            cells[i].on_epoch(state)

    train_batched(
        shared.model,
        [c.state for c in cells],
        shared.train_data,
        shared.test_data,
        [c.temperature for c in cells],
        [c.lr for c in cells],
        shared.epochs,
        shared.log_every,
        chunk,
        on_epoch=on_epoch if any(c.on_epoch for c in cells) else None,
        probes=[c.probe for c in cells],
        probe_every=shared.probe_every,
        method=shared.method if len(cells) > 1 else "loop",
        dense=shared.dense,
    )
