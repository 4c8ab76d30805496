"""Many cells trained as one: full-batch GD of K models at once (docs/method.md section 5).

Cells that share the architecture, variant, data (training and test subsets), epochs,
dtype and chunking differ only in their initial parameters (seed, with alpha already
applied), temperature ``T`` and learning rate. :func:`train_batched` trains them together
and gives every cell the history :func:`goldilocks.training.train` gives it alone: the
same rows at the same epochs, the same divergence rows, the same final parameters, up to
floating-point summation order (``method="loop"``: bit-identical).

Two engines:

- ``vmap``: the K parameter sets stacked along a new leading dimension (the
  ``torch.func.stack_module_state`` layout) and one forward pass
  ``vmap(functional_call)`` over them: matrix products become batched matrix products,
  convolutions grouped convolutions. The K losses are summed for one backward pass;
  independent losses give independent gradients, so each cell's gradient is its own.
- ``loop``: the cells one after another, each exactly as
  :func:`~goldilocks.training.train` runs it.

``auto`` picks ``vmap`` on a GPU and ``loop`` on the CPU: on this project's 2-core CPU a
cell alone is already within a few times its arithmetic floor, ``vmap`` gains nothing for
the MLP and grouped convolutions are slower than the cells one by one, while ``loop``
costs what alone costs and gives bit-identical histories (``benchmarks/training.py``;
docs/performance.md, "Training many cells at once", has the table). On a GPU ``vmap`` is
the point of batching; its speed there is measured by the same benchmark, not assumed.

A cell whose loss turns non-finite gets its divergence row (exactly as alone) and leaves
the batch: it is never updated again and the others go on. Cells may start at different
epochs (resumed from their own checkpoints); each counts its own epochs and leaves the
batch at ``epochs``.

:class:`Batcher` is where cells meet: jobs running as threads of one process hand it
their cell and block; the first of a batch waits for ``max_cells`` cells of the same key
or a short time, then trains them all.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from goldilocks.models import forward
from goldilocks.runtime import FailedElsewhere
from goldilocks.training import (
    Evaluation,
    TrainState,
    _chunks,
    auto_chunk_size,
    evaluate,
    history_row,
    is_logged,
    is_probed,
    loss_and_grad,
    mark_diverged,
    train,
)

METHODS: tuple[str, ...] = ("auto", "vmap", "loop")

Params = dict[str, Tensor]


def batch_method(method: str, device: torch.device) -> str:
    """``auto`` -> ``vmap`` on a GPU, ``loop`` on the CPU (see the module docstring)."""
    if method not in METHODS:
        raise ValueError(f"method: unknown value {method!r}; choose one of {', '.join(METHODS)}")
    if method != "auto":
        return method
    return "vmap" if device.type == "cuda" else "loop"


class _Loop:
    """The cells one after another, each exactly as ``training.train`` computes it."""

    def __init__(self, model, params: list[Params], temperatures, lrs) -> None:
        self.model, self.params = model, list(params)
        self.temperatures, self.lrs = list(temperatures), list(lrs)

    def loss_and_grad(self, x, y, chunk_size) -> tuple[list[Evaluation], list[Params]]:
        out = [
            loss_and_grad(self.model, p, x, y, t, chunk_size)
            for p, t in zip(self.params, self.temperatures, strict=True)
        ]
        return [ev for ev, _ in out], [g for _, g in out]

    def evaluate(self, slots: list[int], x, y, chunk_size) -> list[Evaluation]:
        return [
            evaluate(self.model, self.params[s], x, y, self.temperatures[s], chunk_size)
            for s in slots
        ]

    def cell_params(self, slot: int) -> Params:
        return self.params[slot]

    def all_params(self) -> list[Params]:
        return self.params

    @torch.no_grad()
    def update(self, grads: list[Params], keep: list[int]) -> None:
        """GD step of the ``keep`` slots; the others leave the batch."""
        self.params = [
            {k: v - self.lrs[s] * grads[s][k] for k, v in self.params[s].items()} for s in keep
        ]
        self.temperatures = [self.temperatures[s] for s in keep]
        self.lrs = [self.lrs[s] for s in keep]


class _Stacked:
    """The cells' parameters stacked along dim 0, one ``vmap`` forward over all of them."""

    def __init__(self, model, params: list[Params], temperatures, lrs) -> None:
        first = params[0]
        for i, p in enumerate(params):
            shapes = {k: tuple(v.shape) for k, v in p.items()}
            if shapes != {k: tuple(v.shape) for k, v in first.items()}:
                raise ValueError(
                    f"states[{i}]: parameters differ in names or shapes from states[0]"
                )
        ref = next(iter(first.values()))
        self.model = model
        self.stack = {k: torch.stack([p[k] for p in params]) for k in first}  # (K, ...)
        self.temperatures = torch.tensor(temperatures, dtype=ref.dtype, device=ref.device)  # (K,)
        self.lrs = torch.tensor(lrs, dtype=ref.dtype, device=ref.device)  # (K,)

    def _logits(self, stack: Params, x: Tensor) -> Tensor:
        """``(K, n, classes)`` logits of every stacked cell on the shared ``x``."""
        return torch.func.vmap(lambda p, xx: forward(self.model, p, xx), in_dims=(0, None))(
            stack, x
        )

    @staticmethod
    def _losses(logits: Tensor, temperatures: Tensor, y: Tensor) -> Tensor:
        """Per-cell summed tempered cross-entropy: ``(K, n, classes) -> (K,)``."""
        k, n, _ = logits.shape
        scaled = logits / temperatures.view(k, 1, 1)
        ce = F.cross_entropy(scaled.flatten(0, 1), y.repeat(k), reduction="none")  # (K n,)
        return ce.view(k, n).sum(1)

    def loss_and_grad(self, x, y, chunk_size) -> tuple[list[Evaluation], Params]:
        n = len(y)
        leaves = {k: v.detach().requires_grad_(True) for k, v in self.stack.items()}
        total = torch.zeros(len(self.lrs), dtype=x.dtype, device=x.device)
        correct = torch.zeros(len(self.lrs), dtype=torch.int64, device=x.device)
        grads = None
        for sl in _chunks(n, chunk_size):
            logits = self._logits(leaves, x[sl])  # (K, n_chunk, classes)
            losses = self._losses(logits, self.temperatures, y[sl]) / n  # (K,)
            g = torch.autograd.grad(losses.sum(), list(leaves.values()))
            grads = g if grads is None else [a + b for a, b in zip(grads, g, strict=True)]
            total += losses.detach()
            correct += (logits.detach().argmax(-1) == y[sl]).sum(1)
        evs = [
            Evaluation(loss, hits / n)
            for loss, hits in zip(total.tolist(), correct.tolist(), strict=True)
        ]
        return evs, dict(zip(leaves, grads, strict=True))

    @torch.no_grad()
    def evaluate(self, slots: list[int], x, y, chunk_size) -> list[Evaluation]:
        """Test loss and accuracy of the ``slots``, summed as ``training.evaluate`` sums
        (float64 over the chunks' sums) so that a cell's numbers match its own."""
        if not slots:
            return []
        if slots == list(range(len(self.lrs))):
            stack, temperatures = self.stack, self.temperatures
        else:
            index = torch.tensor(slots, device=self.lrs.device)
            stack = {k: v[index] for k, v in self.stack.items()}
            temperatures = self.temperatures[index]
        total = torch.zeros(len(slots), dtype=torch.float64, device=x.device)
        correct = torch.zeros(len(slots), dtype=torch.int64, device=x.device)
        for sl in _chunks(len(y), chunk_size):
            logits = self._logits(stack, x[sl])  # (k, n_chunk, classes)
            total += self._losses(logits, temperatures, y[sl]).double()
            correct += (logits.argmax(-1) == y[sl]).sum(1)
        return [
            Evaluation(loss / len(y), hits / len(y))
            for loss, hits in zip(total.tolist(), correct.tolist(), strict=True)
        ]

    def cell_params(self, slot: int) -> Params:
        return {k: v[slot] for k, v in self.stack.items()}

    def all_params(self) -> list[Params]:
        columns = {k: v.unbind(0) for k, v in self.stack.items()}
        return [{k: c[s] for k, c in columns.items()} for s in range(len(self.lrs))]

    @torch.no_grad()
    def update(self, grads: Params, keep: list[int]) -> None:
        """GD step of the ``keep`` slots; the others leave the batch (never updated)."""
        stack, lrs, temperatures = self.stack, self.lrs, self.temperatures
        if len(keep) < len(lrs):
            index = torch.tensor(keep, dtype=torch.int64, device=lrs.device)
            stack = {k: v[index] for k, v in stack.items()}
            grads = {k: v[index] for k, v in grads.items()}
            lrs, temperatures = lrs[index], temperatures[index]
        self.stack = {
            k: v - lrs.view(-1, *[1] * (v.dim() - 1)) * grads[k] for k, v in stack.items()
        }
        self.lrs, self.temperatures = lrs, temperatures


def make_engine(
    method: str,
    model: torch.nn.Module,
    params: list[Params],
    temperatures: Sequence[float],
    lrs: Sequence[float],
) -> _Loop | _Stacked:
    """The engine of ``method`` (``vmap`` or ``loop``) that :func:`train_batched` drives.

    One epoch of every cell in it is ``evs, grads = engine.loss_and_grad(x, y, chunk)``
    then ``engine.update(grads, keep=list(range(K)))`` (``benchmarks/training.py`` times
    exactly this); ``engine.evaluate(slots, x, y, chunk)`` evaluates some of the cells.
    """
    if method not in ("vmap", "loop"):
        raise ValueError(f"method: unknown value {method!r}; choose one of vmap, loop")
    return (_Stacked if method == "vmap" else _Loop)(model, params, temperatures, lrs)


def train_batched(
    model: torch.nn.Module,
    states: Sequence[TrainState],
    train_data: tuple[Tensor, Tensor],
    test_data: tuple[Tensor, Tensor],
    temperatures: Sequence[float],
    lrs: Sequence[float],
    epochs: int,
    log_every: int,
    chunk_size: int | None = None,
    on_epoch: Callable[[int, TrainState], None] | None = None,
    probes: Sequence[Callable[[Params], dict] | None] | None = None,
    probe_every: int = 0,
    method: str = "auto",
) -> list[TrainState]:
    """Full-batch GD of K cells at once, each from its own ``states[i]`` to ``epochs``.

    Cell ``i`` starts from ``states[i]`` (parameters already scaled by its alpha, next
    epoch, rows so far) and trains with ``temperatures[i]`` and ``lrs[i]``; all cells
    share ``model``, the data, ``epochs``, ``log_every``, ``chunk_size`` (samples per
    chunk; a chunk holds the activations of all K cells) and ``probe_every``.
    Every cell's rows, divergence and final parameters are those
    :func:`goldilocks.training.train` gives it alone.

    Args:
        on_epoch: ``on_epoch(i, state)`` after every update of cell ``i``
            (checkpointing). With ``vmap`` the state's parameters are views into the
            batch's stacked tensors: clone them before keeping them
            (``torch.save`` writes a view's whole storage, i.e. all K cells). Between
            calls, ``states[i].params`` is not kept up to date.
        probes: per cell, ``probe(params)`` (curvature along training) or ``None``;
            called with that cell's own (unstacked) parameters at its logged epochs that
            are multiples of ``probe_every`` and at the last, its dict merged into the row.
        method: ``vmap``, ``loop`` or ``auto`` (:func:`batch_method`).

    Returns:
        ``states``, updated in place: final parameters (own tensors), epoch and rows.
    """
    k = len(states)
    for name, value in (("temperatures", temperatures), ("lrs", lrs), ("probes", probes)):
        if value is not None and len(value) != k:
            raise ValueError(f"{name}: {len(value)} values for {k} states")
    if k == 0:
        return list(states)
    method = batch_method(method, train_data[0].device)
    engine = make_engine(method, model, [s.params for s in states], temperatures, lrs)
    run = _BatchRun(engine, list(states), epochs, log_every, chunk_size, probes, probe_every)
    active = list(range(k))  # cell index of every slot of the engine
    while active:
        active = run.epoch(active, train_data, test_data, on_epoch)
    return list(states)


@dataclass
class _BatchRun:
    """One :func:`train_batched` run: its engine, the cells' states and the schedule."""

    engine: _Loop | _Stacked
    states: list[TrainState]
    epochs: int
    log_every: int
    chunk_size: int | None
    probes: Sequence[Callable[[Params], dict] | None] | None
    probe_every: int

    def epoch(self, active: list[int], train_data, test_data, on_epoch) -> list[int]:
        """One epoch of the ``active`` cells (``active[slot]`` = cell index): loss and
        gradient, divergence and logged rows, the update; the cells still active."""
        states, engine = self.states, self.engine
        evs, grads = engine.loss_and_grad(*train_data, self.chunk_size)
        leaving: set[int] = set()
        logged: list[int] = []
        for slot, i in enumerate(active):
            if not math.isfinite(evs[slot].loss):
                mark_diverged(states[i], states[i].epoch, evs[slot].loss)
                leaving.add(slot)
            elif is_logged(states[i].epoch, self.log_every, self.epochs):
                logged.append(slot)
        self._log(active, logged, evs, test_data)
        for slot, i in enumerate(active):
            if slot not in leaving and states[i].epoch >= self.epochs:
                leaving.add(slot)
        for slot in leaving:  # final parameters: those the last loss was computed at
            states[active[slot]].params = {
                name: v.clone() for name, v in engine.cell_params(slot).items()
            }
        keep = [slot for slot in range(len(active)) if slot not in leaving]
        engine.update(grads, keep)
        active = [active[slot] for slot in keep]
        current = engine.all_params() if on_epoch is not None else None
        for slot, i in enumerate(active):
            states[i].epoch += 1
            if current is not None:
                states[i].params = current[slot]
                on_epoch(i, states[i])
        return active

    def _log(self, active: list[int], logged: list[int], evs, test_data) -> None:
        """The rows of the ``logged`` slots: train metrics, test metrics, probes."""
        tests = self.engine.evaluate(logged, *test_data, self.chunk_size)
        for slot, test in zip(logged, tests, strict=True):
            state = self.states[active[slot]]
            row = history_row(state.epoch, evs[slot], test, None)
            probe = self.probes[active[slot]] if self.probes is not None else None
            if probe is not None and is_probed(state.epoch, self.probe_every, self.epochs):
                row.update(probe(self.engine.cell_params(slot)))
            state.rows.append(row)


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
    :func:`goldilocks.training.auto_chunk_size` once the batch is closed.
    """

    model: torch.nn.Module
    train_data: tuple[Tensor, Tensor]
    test_data: tuple[Tensor, Tensor]
    epochs: int
    log_every: int
    chunk_size: int | str | None = None
    probe_every: int = 0
    method: str = "auto"


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
    epochs, log_every, dtype, device, chunk size, curvature_every, TF32, and the seed
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
    """Train ``cells`` (one batch) in place of their states."""
    chunk = shared.chunk_size
    x = shared.train_data[0]
    if chunk == "auto":
        chunk = auto_chunk_size(
            shared.model, tuple(x.shape[1:]), len(x), x.dtype, x.device, cells=len(cells)
        )
    if len(cells) == 1:
        (c,) = cells
        c.state = train(
            shared.model,
            c.state,
            shared.train_data,
            shared.test_data,
            c.temperature,
            c.lr,
            shared.epochs,
            shared.log_every,
            chunk,
            on_epoch=c.on_epoch,
            probe=c.probe,
            probe_every=shared.probe_every,
        )
        return

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
        method=shared.method,
    )
