"""How a job runs torch: threads, TF32, device and dtype, its log, its random streams.

Jobs may run as threads of one Snakemake process (``--force-use-threads``, the local
default) or as processes of their own (cluster), so they share nothing mutable: every
random draw comes from a ``torch.Generator`` of its own (:func:`generator`), and torch's
thread count is set by every job for its own thread (:func:`configure_torch`). What they
do share on purpose: read-only values built once for all threads that need them at the
same time (:func:`shared_value`, e.g. a training set on the GPU), and torch's TF32
switches, which are process-wide and therefore taken in turns (:data:`PRECISION`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import platform
import threading
import warnings
import zlib
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path
from typing import TypeVar

import torch

DTYPES = {"float32": torch.float32, "float64": torch.float64}

_CONFIGURED = threading.Lock()
_torch_ready = False


def configure_torch(threads: int = 0) -> None:
    """Set torch's thread count for the calling thread, and switch TF32 off.

    Every job calls this (the benchmarks too). TF32 off is the strict-FP32 default of
    curvature and training (docs/method.md sections 4-5); a training cell with
    ``training.tf32`` switches it on only inside :data:`PRECISION` (section 5.7), which
    keeps it off while any strict job runs. With the OpenMP backend
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


class FailedElsewhere(RuntimeError):
    """Another thread's error, raised in a thread that waited on that thread's work (a
    shared value, a batch): bad input (``user_facing``) keeps its one line and its mark,
    so every waiting job ends as the failing one does; any other error reads
    ``<context>: <error>``."""

    def __init__(self, context: str, error: BaseException) -> None:
        self.user_facing = getattr(error, "user_facing", False)
        super().__init__(str(error) if self.user_facing else f"{context}: {error}")


class DeviceUnavailable(RuntimeError):
    """The configured ``device`` is not on the machine running the job (one line)."""

    user_facing = True


def resolve_device(device: str | torch.device, key: str = "config key device:") -> torch.device:
    """``auto`` -> ``cuda`` when a GPU is present, else ``cpu``.

    Checked where the job runs (a cluster's login node may have no GPU its compute nodes
    have): a ``cuda``/``cuda:N``/``mps`` device this machine lacks raises
    :class:`DeviceUnavailable`, whose line names ``key`` (a benchmark: ``--device``).
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    missing = None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            missing = "this machine has no CUDA GPU that torch can use"
        elif dev.index is not None and dev.index >= count:
            missing = f"this machine has {count} CUDA GPU(s) (cuda:0..cuda:{count - 1})"
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        missing = "this machine has no MPS device that torch can use"
    if missing:
        raise DeviceUnavailable(
            f"{key} {str(device)!r} is not available: {missing} "
            f"(host {platform.node()}); use {key.removeprefix('config key ')} auto or cpu"
        )
    return dev


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


def run_block(entry: Callable) -> Callable:
    """``entry`` as a rule's ``run:`` block calls it: an error marked ``user_facing``
    leaves with its traceback cut, so Snakemake prints its one line (also in the job's
    log, :func:`job_log`) with the rule's line and this one instead of every frame below
    the entry point; any other error keeps its whole traceback."""

    @functools.wraps(entry)
    def call(**kwargs):
        try:
            return entry(**kwargs)
        except Exception as err:
            if not getattr(err, "user_facing", False):
                raise
            raise err.with_traceback(None) from None

    return call


class Precision:
    """Turns of strict-FP32 and TF32 jobs, so TF32 is on only while no strict job runs.

    torch's TF32 switches (``torch.backends.cuda.matmul.allow_tf32``,
    ``torch.backends.cudnn.allow_tf32``) are process-wide, while jobs run as threads of
    one process. Every job that computes float32 on a GPU enters ``with PRECISION(tf32)``:
    curvature cells and training cells with ``tf32=False`` are strict, training cells
    with ``training.tf32`` on a GPU are not. Jobs of one kind run together; the two kinds
    never overlap. TF32 is switched on when the first TF32 job enters and off when the
    last one leaves. Neither kind starves: while jobs of one kind wait, no new job of
    the running kind enters, and when the running kind has drained, every job of the
    other kind that was waiting enters (a readers-writer lock with two reader groups).
    With ``tf32=False`` everywhere (the default) every job enters at once.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._running = {False: 0, True: 0}
        self._waiting = {False: 0, True: 0}
        self._admitted = {False: 0, True: 0}  # may enter although the other kind waits

    def _may_enter(self, tf32: bool) -> bool:
        other = not tf32
        if self._running[other]:
            return False
        return not self._waiting[other] or self._admitted[tf32] > 0

    @contextlib.contextmanager
    def __call__(self, tf32: bool) -> Iterator[None]:
        tf32 = bool(tf32)
        with self._cond:
            self._waiting[tf32] += 1
            self._cond.wait_for(lambda: self._may_enter(tf32))
            self._waiting[tf32] -= 1
            self._admitted[tf32] = max(self._admitted[tf32] - 1, 0)
            self._running[tf32] += 1
            if tf32 and self._running[tf32] == 1:
                _set_tf32(True)
        try:
            yield
        finally:
            with self._cond:
                self._running[tf32] -= 1
                if not self._running[tf32]:
                    if tf32:
                        _set_tf32(False)
                    self._admitted[not tf32] = self._waiting[not tf32]
                    self._cond.notify_all()

    def running(self) -> dict[str, int]:
        """Jobs inside, per kind (for tests and logs)."""
        with self._cond:
            return {"strict": self._running[False], "tf32": self._running[True]}


def _set_tf32(on: bool) -> None:
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


#: The process's one :class:`Precision`: TF32 only while no strict-FP32 job runs.
PRECISION = Precision()

T = TypeVar("T")


class _Entry:
    def __init__(self) -> None:
        self.users = 0
        self.ready = threading.Event()
        self.value = None
        self.error: BaseException | None = None


_SHARED_LOCK = threading.Lock()
_SHARED: dict[Hashable, _Entry] = {}


@contextlib.contextmanager
def shared_value(key: Hashable, build: Callable[[], T]) -> Iterator[T]:
    """``build()`` for ``key``, built once and shared by every thread that holds it.

    The first thread to ask builds it (the others wait for it); the value is dropped when
    the last thread holding it leaves, so it is shared only by jobs that run at the same
    time, never kept. Values must be treated as read-only. Training jobs share their
    data this way: the cells of one batch (:class:`goldilocks.batcher.Batcher`) wait in
    their own threads while one trains them all, and each holding its own copy of the
    training set on the GPU would cost the set's size once per waiting cell.

    Raises:
        FailedElsewhere: in a waiting thread when the building thread's ``build()``
            failed (that thread raises the error itself).
    """
    with _SHARED_LOCK:
        entry = _SHARED.get(key)
        builder = entry is None
        if builder:
            entry = _SHARED[key] = _Entry()
        entry.users += 1
    try:
        if builder:
            try:
                entry.value = build()
            except BaseException as err:
                entry.error = err
                raise
            finally:
                entry.ready.set()
        else:
            entry.ready.wait()
            if entry.error is not None:
                raise FailedElsewhere("building the shared value failed", entry.error) from (
                    entry.error
                )
        yield entry.value
    finally:
        with _SHARED_LOCK:
            entry.users -= 1
            if (not entry.users or entry.error is not None) and _SHARED.get(key) is entry:
                del _SHARED[key]
