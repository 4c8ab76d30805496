"""How a job runs torch: threads, TF32, device and dtype, its log, its random streams.

Jobs may run as threads of one Snakemake process (``--force-use-threads``, the local
default) or as processes of their own (cluster), so they share nothing mutable: every
random draw comes from a ``torch.Generator`` of its own (:func:`generator`), and torch's
thread count is set by every job for its own thread (:func:`configure_torch`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path

import torch

DTYPES = {"float32": torch.float32, "float64": torch.float64}

_CONFIGURED = threading.Lock()
_torch_ready = False


def configure_torch(threads: int = 0) -> None:
    """Set torch's thread count for the calling thread, and switch TF32 off.

    Every job calls this (the benchmarks too). TF32 is off for curvature and training
    alike (docs/method.md sections 4-5: strict float32). With the OpenMP backend
    ``torch.set_num_threads`` is not process-wide in practice: libgomp keeps the count
    per OS thread once that thread has run a parallel region, so a count set once by the
    first job did not reach the other worker threads of ``--force-use-threads``
    (measured: under ``--cores 2`` some cells ran with 1 thread and some with 2, and
    their float32 results differed in the last bits). Setting it in each job makes every
    cell run with its rule's ``threads``; ``threads <= 0`` leaves the count as it is.
    """
    global _torch_ready
    if threads > 0 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    with _CONFIGURED:
        if _torch_ready:
            return
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        # torch.func's first vmap scripts a helper and warns that torch.jit.script is
        # deprecated: torch's own business, noise in every job log.
        warnings.filterwarnings(
            "ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning
        )
        _torch_ready = True


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` -> ``cuda`` when a GPU is present, else ``cpu``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def dtype_of(name: str) -> torch.dtype:
    """``float32`` or ``float64`` as a torch dtype."""
    return DTYPES[name]


def generator(seed: int, stream: str) -> torch.Generator:
    """An independent CPU generator per (seed, purpose).

    The streams in use: ``params`` (initialisation), ``batch`` (the curvature batch),
    ``projection`` (R), ``subset`` and ``test`` (the training and test subsets).
    """
    return torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(stream.encode()))


@contextlib.contextmanager
def job_log(path: str | os.PathLike) -> Iterator[logging.Logger]:
    """A logger that writes to this job's log file only (thread-safe, per job).

    An exception marked ``user_facing`` (bad input) is logged as its one line; any other
    with its traceback. Either way it propagates, so the job fails.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger(f"goldilocks.job.{path}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger.addHandler(handler)
    try:
        yield logger
    except Exception as err:
        if getattr(err, "user_facing", False):  # bad input: one line, no traceback
            logger.error("job failed: %s", err)
        else:
            logger.exception("job failed")
        raise
    finally:
        logger.removeHandler(handler)
        handler.close()
