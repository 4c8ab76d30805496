"""Timing helper shared by the benchmarks: warm-up, then the median of timed calls."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch


def sync(device: torch.device) -> None:
    """Wait for queued GPU work (device calls return before the work is done)."""
    if device.type == "cuda":
        torch.cuda.synchronize()


#: Clocks of :func:`timed`: wall time, or on the CPU with one torch thread the CPU time of
#: the calling thread (which runs all of torch's work then); the latter does not count the
#: time other processes hold the core: on a shared machine the wall clock measures the
#: load as much as the code.
CLOCK = {"wall": time.perf_counter, "cpu": time.thread_time}


def timed(fn, device: torch.device, repeats: int, clock: str = "wall", best: bool = False) -> float:
    """Median (``best``: least) time of ``fn()`` on ``clock`` over ``repeats`` calls after
    one warm-up call."""
    now = CLOCK[clock]
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = now()
        fn()
        sync(device)
        times.append(now() - start)
    return min(times) if best else statistics.median(times)


def device_or_exit(name: str) -> torch.device:
    """``--device`` resolved as the workflow resolves ``device`` (``auto``: a GPU when
    present); one this machine lacks ends the script with one line, not a CUDA traceback."""
    from goldilocks.runtime import DeviceUnavailable, resolve_device

    try:
        return resolve_device(name, key="--device")
    except DeviceUnavailable as err:
        raise SystemExit(f"{Path(sys.argv[0]).name}: {err}") from None


if __name__ == "__main__":
    raise SystemExit(
        "benchmarks/timing.py is the benchmarks' shared timing helper, not a benchmark: "
        "run one of the others (python -m benchmarks.<name> --help; README, 'Layout')"
    )
