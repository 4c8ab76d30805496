"""The arithmetic of a GD epoch: one cell's or K cells' loss, accuracy and gradient
(docs/method.md sections 5 and 5.7).

The full batch is processed in chunks of ``chunk_size`` samples whose gradients add up to
the full-batch gradient exactly (up to summation order), so memory does not bound the
batch. :func:`chunked` is that loop, written once: every loss, accuracy and gradient
below is computed by it, for one cell (:func:`loss_and_grad`, :func:`evaluate`) or for K
cells stacked (:class:`Stacked`).

Two engines hold the parameters of the K cells of a batch
(:func:`goldilocks.training.train_batched` drives them, epoch by epoch):

- ``vmap`` (:class:`Stacked`): the K parameter sets stacked along a new leading dimension
  (the ``torch.func.stack_module_state`` layout) and one forward pass
  ``vmap(functional_call)`` over them: matrix products become batched matrix products,
  convolutions grouped convolutions. The K losses are summed for one backward pass;
  independent losses give independent gradients, so each cell's gradient is its own.
- ``loop`` (:class:`Loop`): the cells one after another, each exactly as it trains alone.

``auto`` picks ``vmap`` on a GPU and ``loop`` on the CPU: on this project's 2-core CPU a
cell alone is already within a few times its arithmetic floor, ``vmap`` gains nothing for
the MLP and grouped convolutions are slower than the cells one by one, while ``loop``
costs what alone costs and gives bit-identical histories (``benchmarks/training.py``;
docs/performance.md, "Training many cells at once", has the table). On a GPU ``vmap`` is
the point of batching; its speed there is measured by the same benchmark, not assumed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from goldilocks.models import forward

METHODS: tuple[str, ...] = ("auto", "vmap", "loop")

Params = dict[str, Tensor]
#: ``losses(params, x, y) -> (summed losses, logits)`` of one cell (``()``,
#: ``(n, classes)``) or of K stacked cells (``(K,)``, ``(K, n, classes)``).
Losses = Callable[[Params, Tensor, Tensor], tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class Evaluation:
    loss: float
    accuracy: float


def chunks(n: int, chunk_size: int | None) -> list[slice]:
    """The slices of ``n`` samples, ``chunk_size`` each (the last may be shorter);
    ``None`` or 0: one chunk."""
    step = chunk_size or n
    return [slice(i, min(i + step, n)) for i in range(0, n, step)]


def chunked(
    losses: Losses,
    params: Params,
    x: Tensor,
    y: Tensor,
    chunk_size: int | None,
    grad: bool,
) -> tuple[list[Evaluation], Params | None]:
    """Mean tempered cross-entropy and accuracy of one or K cells on ``(x, y)``, summed
    over the chunks of ``chunk_size`` samples, and with ``grad`` the gradient.

    ``grad=True`` (training): each chunk's losses are divided by ``n`` (the mean over the
    full batch), summed in the data's dtype, and their gradients with respect to
    ``params`` added up chunk by chunk; one host sync at the end. ``grad=False``
    (evaluation): no graph; the chunks' summed losses are added in float64 and divided by
    ``n`` at the end.

    Returns:
        One :class:`Evaluation` per cell (one for a single cell) and the gradient
        (``None`` without ``grad``; stacked like ``params`` for K cells).
    """
    n = len(y)
    leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()} if grad else params
    total = correct = grads = None
    with torch.set_grad_enabled(grad):
        for sl in chunks(n, chunk_size):
            summed, logits = losses(leaves, x[sl], y[sl])
            if grad:
                summed = summed / n
                g = torch.autograd.grad(summed.sum(), list(leaves.values()))
                grads = g if grads is None else [a + b for a, b in zip(grads, g, strict=True)]
                summed = summed.detach()
            else:
                summed = summed.double()
            hits = (logits.detach().argmax(-1) == y[sl]).sum(-1)  # no host sync per chunk
            total = summed if total is None else total + summed
            correct = hits if correct is None else correct + hits
    evs = [
        Evaluation(loss if grad else loss / n, hits / n)
        for loss, hits in zip(total.reshape(-1).tolist(), correct.reshape(-1).tolist(), strict=True)
    ]
    return evs, (dict(zip(leaves, grads, strict=True)) if grad else None)


def cell_losses(model: torch.nn.Module, temperature: float) -> Losses:
    """One cell's summed tempered cross-entropy and logits."""

    def losses(params: Params, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        logits = forward(model, params, x)  # (n, classes)
        return F.cross_entropy(logits / temperature, y, reduction="sum"), logits

    return losses


def loss_and_grad(
    model: torch.nn.Module,
    params: Params,
    x: Tensor,
    y: Tensor,
    temperature: float,
    chunk_size: int | None = None,
) -> tuple[Evaluation, Params]:
    """Full-batch mean tempered cross-entropy, accuracy and gradient of one cell."""
    (ev,), grads = chunked(cell_losses(model, temperature), params, x, y, chunk_size, grad=True)
    return ev, grads


def evaluate(model, params: Params, x: Tensor, y: Tensor, temperature: float, chunk_size=None):
    """Mean tempered cross-entropy and accuracy (an :class:`Evaluation`) of one cell on
    ``(x, y)``; the arguments as :func:`loss_and_grad`'s."""
    (ev,), _ = chunked(cell_losses(model, temperature), params, x, y, chunk_size, grad=False)
    return ev


def batch_method(method: str, device: torch.device) -> str:
    """``auto`` -> ``vmap`` on a GPU, ``loop`` on the CPU (see the module docstring)."""
    if method not in METHODS:
        raise ValueError(f"method: unknown value {method!r}; choose one of {', '.join(METHODS)}")
    if method != "auto":
        return method
    return "vmap" if device.type == "cuda" else "loop"


class Loop:
    """The cells one after another, each exactly as it trains alone."""

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


class Stacked:
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

    def _losses(self, temperatures: Tensor) -> Losses:
        """Per-cell summed tempered cross-entropy ``(K,)`` and logits ``(K, n, classes)``
        of every stacked cell on the shared ``x``."""

        def losses(stack: Params, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
            logits = torch.func.vmap(lambda p, xx: forward(self.model, p, xx), in_dims=(0, None))(
                stack, x
            )
            k, n, _ = logits.shape
            scaled = logits / temperatures.view(k, 1, 1)
            ce = F.cross_entropy(scaled.flatten(0, 1), y.repeat(k), reduction="none")  # (K n,)
            return ce.view(k, n).sum(1), logits

        return losses

    def loss_and_grad(self, x, y, chunk_size) -> tuple[list[Evaluation], Params]:
        return chunked(self._losses(self.temperatures), self.stack, x, y, chunk_size, grad=True)

    def evaluate(self, slots: list[int], x, y, chunk_size) -> list[Evaluation]:
        """Test loss and accuracy of the ``slots``, summed as :func:`evaluate` sums
        (float64 over the chunks' sums) so that a cell's numbers match its own."""
        if not slots:
            return []
        if slots == list(range(len(self.lrs))):
            stack, temperatures = self.stack, self.temperatures
        else:
            index = torch.tensor(slots, device=self.lrs.device)
            stack = {k: v[index] for k, v in self.stack.items()}
            temperatures = self.temperatures[index]
        evs, _ = chunked(self._losses(temperatures), stack, x, y, chunk_size, grad=False)
        return evs

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


Engine = Loop | Stacked


def make_engine(
    method: str,
    model: torch.nn.Module,
    params: list[Params],
    temperatures: Sequence[float],
    lrs: Sequence[float],
) -> Engine:
    """The engine of ``method`` (``vmap`` or ``loop``) that
    :func:`goldilocks.training.train_batched` drives.

    One epoch of every cell in it is ``evs, grads = engine.loss_and_grad(x, y, chunk)``
    then ``engine.update(grads, keep=list(range(K)))`` (``benchmarks/training.py`` times
    exactly this); ``engine.evaluate(slots, x, y, chunk)`` evaluates some of the cells.
    """
    if method not in ("vmap", "loop"):
        raise ValueError(f"method: unknown value {method!r}; choose one of vmap, loop")
    return (Stacked if method == "vmap" else Loop)(model, params, temperatures, lrs)
