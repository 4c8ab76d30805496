"""Full-batch gradient descent (SPEC section 5).

Plain GD, no momentum, no weight decay, no augmentation: ``theta <- theta - lr grad L``
with ``L`` the mean tempered cross-entropy over the whole training set (or a fixed seeded
subset). The data stay tensors on the device; the full batch is processed in chunks of
``chunk_size`` samples whose gradients add up to the full-batch gradient exactly (up to
summation order), so memory does not bound the batch.

Row ``e`` of the history describes the parameters after ``e`` updates (``e = 0`` is the
initialisation). A run whose loss turns non-finite stops and is recorded as diverged at
that epoch; that is data, not an error.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from goldilocks.models import forward


@dataclass
class TrainState:
    """Everything needed to continue a run: parameters, next epoch and the rows so far."""

    params: dict[str, Tensor]
    epoch: int = 0
    rows: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class Evaluation:
    loss: float
    accuracy: float


def _row(epoch: int, train: Evaluation, test: Evaluation | None, diverged_at: int | None) -> dict:
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


def _chunks(n: int, chunk_size: int | None):
    step = chunk_size or n
    return [slice(i, min(i + step, n)) for i in range(0, n, step)]


def loss_and_grad(
    model: torch.nn.Module,
    params: dict[str, Tensor],
    x: Tensor,
    y: Tensor,
    temperature: float,
    chunk_size: int | None = None,
) -> tuple[Evaluation, dict[str, Tensor]]:
    """Full-batch mean tempered cross-entropy, accuracy and gradient."""
    n = len(y)
    leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    total_loss = torch.zeros((), dtype=x.dtype, device=x.device)
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    grads = None
    for sl in _chunks(n, chunk_size):
        logits = forward(model, leaves, x[sl])  # (n_chunk, K)
        loss = F.cross_entropy(logits / temperature, y[sl], reduction="sum") / n
        g = torch.autograd.grad(loss, list(leaves.values()))
        grads = g if grads is None else [a + b for a, b in zip(grads, g, strict=True)]
        total_loss += loss.detach()
        correct += (logits.detach().argmax(-1) == y[sl]).sum()  # no host sync per chunk
    return Evaluation(total_loss.item(), correct.item() / n), dict(zip(leaves, grads, strict=True))


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    params: dict[str, Tensor],
    x: Tensor,
    y: Tensor,
    temperature: float,
    chunk_size: int | None = None,
) -> Evaluation:
    """Mean tempered cross-entropy and accuracy on ``(x, y)``."""
    total, correct = 0.0, 0
    for sl in _chunks(len(y), chunk_size):
        logits = forward(model, params, x[sl])
        total += F.cross_entropy(logits / temperature, y[sl], reduction="sum").item()
        correct += (logits.argmax(-1) == y[sl]).sum().item()
    return Evaluation(total / len(y), correct / len(y))


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
    probe: Callable[[dict[str, Tensor]], dict] | None = None,
    probe_every: int = 0,
) -> TrainState:
    """Run full-batch GD from ``state`` up to ``epochs`` updates.

    Logs train and test loss and accuracy every ``log_every`` epochs and at the last.
    Each row: ``epoch, train_loss, train_acc, test_loss, test_acc, diverged,
    diverged_epoch``. ``on_epoch(state)`` is called after every update (checkpointing).
    ``probe(params)`` (curvature along training) is called at logged epochs that are
    multiples of ``probe_every`` and at the last; its dict is merged into the row.

    Returns:
        The final state; ``state.rows`` is the history.
    """
    x, y = train_data
    while True:
        epoch = state.epoch
        ev, grads = loss_and_grad(model, state.params, x, y, temperature, chunk_size)
        if not math.isfinite(ev.loss):
            state.rows.append(_row(epoch, Evaluation(ev.loss, math.nan), None, epoch))
            for row in state.rows:
                row["diverged"], row["diverged_epoch"] = True, epoch
            return state
        if epoch % log_every == 0 or epoch == epochs:
            test = evaluate(model, state.params, *test_data, temperature, chunk_size)
            row = _row(epoch, ev, test, None)
            if probe is not None and probe_every and (epoch % probe_every == 0 or epoch == epochs):
                row.update(probe(state.params))
            state.rows.append(row)
        if epoch >= epochs:
            return state
        with torch.no_grad():
            state.params = {k: v - lr * grads[k] for k, v in state.params.items()}
        state.epoch = epoch + 1
        if on_epoch is not None:
            on_epoch(state)
