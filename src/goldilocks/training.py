"""Full-batch gradient descent (docs/method.md sections 5 and 5.7): the one epoch loop.

Plain GD, no momentum, no weight decay, no augmentation: ``theta <- theta - lr grad L``
with ``L`` the mean tempered cross-entropy over the whole training set (or a fixed seeded
subset). The data stay tensors on the device; the loss, accuracy and gradient of an epoch
are :mod:`goldilocks.engines`' (chunked, so memory does not bound the batch).

Row ``e`` of the history describes the parameters after ``e`` updates (``e = 0`` is the
initialisation). A run whose loss turns non-finite stops and is recorded as diverged at
that epoch; that is data, not an error.

Cells that share the architecture, variant, data (training and test subsets), epochs,
dtype and chunking differ only in their initial parameters (seed, with alpha already
applied), temperature ``T`` and learning rate. :func:`train_batched` trains K of them
together, epoch by epoch, with one engine of :mod:`goldilocks.engines`, and gives every
cell the history it has alone: the same rows at the same epochs, the same divergence
rows, the same final parameters, up to floating-point summation order (engine ``loop``:
bit-identical). :func:`train` is a batch of one cell with the ``loop`` engine.

A cell whose loss turns non-finite gets its divergence row and leaves the batch: it is
never updated again and the others go on. Cells may start at different epochs (resumed
from their own checkpoints); each counts its own epochs and leaves the batch at
``epochs``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from goldilocks.convergence import window_start
from goldilocks.engines import Engine, Evaluation, Params, batch_method, make_engine


@dataclass
class TrainState:
    """Everything needed to continue a run: parameters, next epoch and the rows so far."""

    params: dict[str, Tensor]
    epoch: int = 0
    rows: list[dict] = field(default_factory=list)


def history_row(
    epoch: int, train: Evaluation, test: Evaluation | None, diverged_at: int | None
) -> dict:
    """One history row; ``test`` None (not evaluated) gives NaN test metrics."""
    return dict(
        epoch=epoch,
        train_loss=train.loss,
        train_acc=train.accuracy,
        test_loss=math.nan if test is None else test.loss,
        test_acc=math.nan if test is None else test.accuracy,
        diverged=diverged_at is not None,
        diverged_epoch=diverged_at,
    )


def is_logged(epoch: int, log_every: int, epochs: int, dense: bool = False) -> bool:
    """Whether epoch ``epoch`` gets a history row: every ``log_every`` and the last; with
    ``dense`` (``training.log_convergence``, docs/method.md section 5.8) also every epoch
    1..min(10, epochs) and every epoch of the last 10%
    (:func:`goldilocks.convergence.window_start`), the epochs convergence is judged on."""
    if epoch % log_every == 0 or epoch == epochs:
        return True
    return dense and (1 <= epoch <= 10 or epoch >= window_start(epochs))


def is_probed(epoch: int, probe_every: int, epochs: int) -> bool:
    """Whether a logged epoch also gets curvature (every ``probe_every`` and the last)."""
    return bool(probe_every) and (epoch % probe_every == 0 or epoch == epochs)


def mark_diverged(state: TrainState, epoch: int, loss: float) -> None:
    """Record a non-finite loss at ``epoch``: a last row with the loss and NaN metrics,
    and every row of the run flagged ``diverged`` with ``diverged_epoch = epoch``."""
    state.rows.append(history_row(epoch, Evaluation(loss, math.nan), None, epoch))
    for row in state.rows:
        row["diverged"], row["diverged_epoch"] = True, epoch


def train(
    model: torch.nn.Module,
    state: TrainState,
    train_data: tuple[Tensor, Tensor],
    test_data: tuple[Tensor, Tensor],
    temperature: float,
    lr: float,
    epochs: int,
    log_every: int,
    chunk_size: int | None = None,
    on_epoch: Callable[[TrainState], None] | None = None,
    probe: Callable[[Params], dict] | None = None,
    probe_every: int = 0,
    dense: bool = False,
) -> TrainState:
    """Run full-batch GD of one cell from ``state`` up to ``epochs`` updates: a batch of
    one (:func:`train_batched`, engine ``loop``).

    Logs train and test loss and accuracy every ``log_every`` epochs and at the last
    (with ``dense``, also the epochs of :func:`is_logged`'s dense schedule).
    Each row: ``epoch, train_loss, train_acc, test_loss, test_acc, diverged,
    diverged_epoch``. ``on_epoch(state)`` is called after every update (checkpointing).
    ``probe(params)`` (curvature along training) is called at logged epochs that are
    multiples of ``probe_every`` and at the last; its dict is merged into the row.

    Returns:
        The final state; ``state.rows`` is the history.
    """
    (state,) = train_batched(
        model,
        [state],
        train_data,
        test_data,
        [temperature],
        [lr],
        epochs,
        log_every,
        chunk_size,
        on_epoch=None if on_epoch is None else lambda _, s: on_epoch(s),
        probes=[probe],
        probe_every=probe_every,
        method="loop",
        dense=dense,
    )
    return state


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
    dense: bool = False,
) -> list[TrainState]:
    """Full-batch GD of K cells at once, each from its own ``states[i]`` to ``epochs``.

    Cell ``i`` starts from ``states[i]`` (parameters already scaled by its alpha, next
    epoch, rows so far) and trains with ``temperatures[i]`` and ``lrs[i]``; all cells
    share ``model``, the data, ``epochs``, ``log_every``, ``chunk_size`` (samples per
    chunk; a chunk holds the activations of all K cells) and ``probe_every``.
    Every cell's rows, divergence and final parameters are those it gets alone.

    Args:
        on_epoch: ``on_epoch(i, state)`` after every update of cell ``i``
            (checkpointing). With ``vmap`` the state's parameters are views into the
            batch's stacked tensors: clone them before keeping them
            (``torch.save`` writes a view's whole storage, i.e. all K cells). Between
            calls, ``states[i].params`` is not kept up to date.
        probes: per cell, ``probe(params)`` (curvature along training) or ``None``;
            called with that cell's own (unstacked) parameters at its logged epochs that
            are multiples of ``probe_every`` and at the last, its dict merged into the row.
        method: ``vmap``, ``loop`` or ``auto``
            (:func:`goldilocks.engines.batch_method`).
        dense: also log :func:`is_logged`'s dense epochs (``training.log_convergence``).

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
    run = _EpochLoop(
        engine, list(states), epochs, log_every, chunk_size, probes, probe_every, dense
    )
    active = list(range(k))  # cell index of every slot of the engine
    while active:
        active = run.epoch(active, train_data, test_data, on_epoch)
    return list(states)


@dataclass
class _EpochLoop:
    """One :func:`train_batched` run: its engine, the cells' states and the schedule."""

    engine: Engine
    states: list[TrainState]
    epochs: int
    log_every: int
    chunk_size: int | None
    probes: Sequence[Callable[[Params], dict] | None] | None
    probe_every: int
    dense: bool = False

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
            elif is_logged(states[i].epoch, self.log_every, self.epochs, self.dense):
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
        """The rows of the ``logged`` slots: train metrics (from the step's own forward
        pass), test metrics, probes. The epochs only dense logging adds (``dense``,
        :func:`is_logged`) get no test evaluation: convergence and the early instability
        are read on the train loss, and a test pass there would cost 12% more per cell
        (docs/method.md section 5.2); their test metrics are NaN."""
        tested = [
            slot
            for slot in logged
            if is_logged(self.states[active[slot]].epoch, self.log_every, self.epochs)
        ]
        evaluated = self.engine.evaluate(tested, *test_data, self.chunk_size) if tested else []
        tests = dict(zip(tested, evaluated, strict=True))
        for slot in logged:
            state = self.states[active[slot]]
            row = history_row(state.epoch, evs[slot], tests.get(slot), None)
            probe = self.probes[active[slot]] if self.probes is not None else None
            if probe is not None and is_probed(state.epoch, self.probe_every, self.epochs):
                row.update(probe(self.engine.cell_params(slot)))
            state.rows.append(row)
