"""Memory sizing: how many samples of a training batch fit the device at once
(``training.chunk_size: auto``, docs/method.md section 5.1).

Only the number of samples per chunk depends on it; the arithmetic of a chunk is
:mod:`goldilocks.engines`'. The estimate is measured on the CPU (what autograd saves for
backward per sample) and scaled by the cells trained together.
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch import Tensor

from goldilocks.models import forward

#: ``chunk_size: auto`` lets the full batch use at most this fraction of the memory that
#: is free on the device (the rest is headroom for other jobs, the allocator's caching
#: and what the estimate misses).
MEMORY_FRACTION = 0.5
#: Peak memory of one forward and backward pass as a multiple of the bytes autograd saves
#: for backward (activation gradients, convolution workspaces and transient outputs come
#: on top). Measured on the CPU, peak RSS above the baseline of ``engines.loss_and_grad`` on
#: 2,000-20,000 samples was 1.5x (LeNet-5), 1.9x (LeNet-300-100, ResNet-4 combined) and
#: 3.0x (ResNet-4 homogeneous) the saved bytes; for K = 8-16 cells batched by ``vmap``
#: (:mod:`goldilocks.engines`) 0.67-0.98 of this estimate times K.
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
    (:func:`goldilocks.training.train_batched`), whose activations add up. Otherwise the
    batch is cut into equal chunks, as few as fit.

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


def resolve_chunk_size(
    chunk_size: int | str | None, model: torch.nn.Module, x: Tensor, cells: int = 1
) -> int | None:
    """``training.chunk_size`` for ``cells`` cells trained together on the samples ``x``:
    ``auto`` resolved by :func:`auto_chunk_size` on ``x``'s device and dtype, a number
    or ``None`` as given."""
    if chunk_size != "auto":
        return chunk_size
    return auto_chunk_size(model, tuple(x.shape[1:]), len(x), x.dtype, x.device, cells=cells)
