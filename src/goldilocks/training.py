"""Full-batch gradient descent (docs/method.md section 5).

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
import os
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


def is_logged(epoch: int, log_every: int, epochs: int) -> bool:
    """Whether epoch ``epoch`` gets a history row: every ``log_every`` and the last."""
    return epoch % log_every == 0 or epoch == epochs


def is_probed(epoch: int, probe_every: int, epochs: int) -> bool:
    """Whether a logged epoch also gets curvature (every ``probe_every`` and the last)."""
    return bool(probe_every) and (epoch % probe_every == 0 or epoch == epochs)


def mark_diverged(state: TrainState, epoch: int, loss: float) -> None:
    """Record a non-finite loss at ``epoch``: a last row with the loss and NaN metrics,
    and every row of the run flagged ``diverged`` with ``diverged_epoch = epoch``."""
    state.rows.append(history_row(epoch, Evaluation(loss, math.nan), None, epoch))
    for row in state.rows:
        row["diverged"], row["diverged_epoch"] = True, epoch


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
            mark_diverged(state, epoch, ev.loss)
            return state
        if is_logged(epoch, log_every, epochs):
            test = evaluate(model, state.params, *test_data, temperature, chunk_size)
            row = history_row(epoch, ev, test, None)
            if probe is not None and is_probed(epoch, probe_every, epochs):
                row.update(probe(state.params))
            state.rows.append(row)
        if epoch >= epochs:
            return state
        with torch.no_grad():
            state.params = {k: v - lr * grads[k] for k, v in state.params.items()}
        state.epoch = epoch + 1
        if on_epoch is not None:
            on_epoch(state)


#: ``chunk_size: auto`` lets the full batch use at most this fraction of the memory that
#: is free on the device (the rest is headroom for other jobs, the allocator's caching
#: and what the estimate misses).
MEMORY_FRACTION = 0.5
#: Peak memory of one forward and backward pass as a multiple of the bytes autograd saves
#: for backward (activation gradients, convolution workspaces and transient outputs come
#: on top). Measured on the CPU, peak RSS above the baseline of ``loss_and_grad`` on
#: 2,000-20,000 samples was 1.5x (LeNet-5), 1.9x (LeNet-300-100, ResNet-4 combined) and
#: 3.0x (ResNet-4 homogeneous) the saved bytes; for K = 8-16 cells batched by ``vmap``
#: (:mod:`goldilocks.batched`) 0.67-0.98 of this estimate times K.
BACKWARD_PEAK_FACTOR = 3.0


def saved_bytes_per_sample(
    model: torch.nn.Module,
    in_shape: tuple[int, ...],
    dtype: torch.dtype,
    probe_sizes: tuple[int, int] = (4, 12),
) -> float:
    """Bytes autograd keeps for backward per training sample, measured on the CPU.

    Runs the tempered loss forward on two small random batches inside
    ``torch.autograd.graph.saved_tensors_hooks`` and counts the distinct storages saved
    for backward, leaving out the parameters' and the input's (the data stay resident
    anyway). The difference between the two batch sizes divided by their difference is
    the cost of one more sample; the sizes of saved tensors do not depend on the device.
    """
    from goldilocks.models import init_params

    params = init_params(model, torch.Generator().manual_seed(0), dtype)
    leaves = {k: v.requires_grad_(True) for k, v in params.items()}
    totals = []
    for m in probe_sizes:
        x = torch.randn(m, *in_shape, dtype=dtype)
        y = torch.zeros(m, dtype=torch.int64)
        skip = {t.untyped_storage().data_ptr() for t in [x, *leaves.values()]}
        seen: dict[int, int] = {}

        def pack(t: Tensor, seen=seen, skip=skip) -> Tensor:
            storage = t.untyped_storage()
            if storage.data_ptr() not in skip:
                seen[storage.data_ptr()] = storage.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = F.cross_entropy(forward(model, leaves, x), y, reduction="sum")
        del loss
        totals.append(sum(seen.values()))
    return (totals[1] - totals[0]) / (probe_sizes[1] - probe_sizes[0])


class NoRoom(ValueError):
    """``chunk_size: auto`` finds no room for even one sample, or cannot tell the
    machine's memory (one line naming the key)."""

    user_facing = True


def available_memory(device: torch.device) -> int:
    """Bytes free for new tensors: on a GPU the driver's free memory plus what torch has
    cached but not allocated; on Apple's ``mps`` torch's recommended working set less what
    its driver holds (older torch: as the CPU); on the CPU ``MemAvailable`` of
    ``/proc/meminfo`` (Linux), elsewhere the physical memory (macOS: no portable call
    tells the free memory).

    Raises:
        NoRoom: on a CPU whose memory none of these tells.
    """
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    if device.type == "mps" and hasattr(torch.mps, "recommended_max_memory"):  # torch >= 2.5
        return max(0, torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory())
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # no sysconf, or no such name here
        raise NoRoom(
            "config key training.chunk_size: auto cannot tell this machine's memory; "
            "set a number of samples per chunk"
        ) from None


def auto_chunk_size(
    model: torch.nn.Module,
    in_shape: tuple[int, ...],
    n_samples: int,
    dtype: torch.dtype,
    device: torch.device,
    cells: int = 1,
    available: int | None = None,
) -> int | None:
    """``chunk_size: auto``: ``None`` (one chunk) when the full batch fits, else a size.

    The full batch of ``n_samples`` fits when ``n_samples x cells x BACKWARD_PEAK_FACTOR
    x saved_bytes_per_sample`` is at most ``MEMORY_FRACTION`` of ``available`` (default:
    :func:`available_memory` of ``device``); ``cells`` counts the cells trained together
    (:mod:`goldilocks.batched`), whose activations add up. Otherwise the batch is cut
    into equal chunks, as few as fit.

    Raises:
        NoRoom: when not even one sample fits.
    """
    per_sample = BACKWARD_PEAK_FACTOR * cells * saved_bytes_per_sample(model, in_shape, dtype)
    budget = MEMORY_FRACTION * (available_memory(device) if available is None else available)
    if n_samples * per_sample <= budget:
        return None
    largest = int(budget // per_sample)
    if largest < 1:
        raise NoRoom(
            f"config key training.chunk_size: auto: one sample of {cells} cell(s) needs "
            f"{per_sample / 2**20:.1f} MiB, more than the {budget / 2**20:.1f} MiB allowed "
            f"on {device.type}"
        )
    chunks = math.ceil(n_samples / largest)
    return math.ceil(n_samples / chunks)
