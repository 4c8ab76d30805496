"""How far a run of training cells got: finished cells, their compute time, the batches
they trained in, and the epochs that unfinished cells reached (from their checkpoints).

Reads ``results/train`` (finished cells' Parquet files), ``results/checkpoints`` and
``logs/train`` under ``--workdir``; ``--since`` (a Unix time) counts only files written
since then (a run's own cells, not those of an earlier run). ``benchmarks/gpu.sh`` runs
it after the paper-grid step it stops at its deadline.

    python -m benchmarks.grid_progress [--workdir .] [--since 1764650000]
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from collections import Counter
from pathlib import Path

import pandas as pd

from goldilocks.io import load_tensors

BATCH_LINE = re.compile(r"training in a batch of (\d+) cells")


def since(paths, t0: float) -> list[Path]:
    return [p for p in paths if p.stat().st_mtime >= t0]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", default=".", help="the run's folder (holds results/)")
    parser.add_argument("--since", type=float, default=0.0, help="Unix time; count newer files")
    parser.add_argument("--grid-cells", type=int, default=1332, help="for the projection "
                        "(default: configs/paper.yaml's training cells)")  # fmt: skip
    parser.add_argument("--grid-epochs", type=int, default=1000, help="epochs per grid cell")
    args = parser.parse_args()
    root = Path(args.workdir)
    if not root.is_dir():
        parser.error(f"--workdir {root}: no such folder")
    now = time.time()
    cells = since(sorted((root / "results/train").rglob("*.parquet")), args.since)
    seconds, diverged, epochs = [], 0, Counter()
    for path in cells:
        last = pd.read_parquet(path).iloc[-1]
        seconds.append(float(last["compute_seconds"]))
        diverged += bool(last["diverged"])
        epochs[int(last["epoch"])] += 1
    window = f" in the last {now - args.since:.0f} s" if args.since else ""
    print(f"finished cells{window}: {len(cells)} ({diverged} diverged); last epochs {dict(epochs)}")
    if seconds:
        print(
            f"compute_seconds per finished cell: median {statistics.median(seconds):.2f}, "
            f"min {min(seconds):.2f}, max {max(seconds):.2f}, sum {sum(seconds):.1f}"
        )
    batches = Counter()
    for log in since(sorted((root / "logs/train").rglob("*.log")), args.since):
        if found := BATCH_LINE.search(log.read_text(errors="replace")):
            batches[int(found.group(1))] += 1
    print(f"cells per batch size (from the logs): {dict(sorted(batches.items()))}")
    reached = []
    for path in since(sorted((root / "results/checkpoints").rglob("*.pt")), args.since):
        try:
            reached.append(int(load_tensors(path)["epoch"]))
        except Exception as err:  # one being written when the run was stopped
            print(f"unreadable checkpoint {path}: {err}")
    if reached:
        print(
            f"unfinished cells with a checkpoint: {len(reached)}, epochs reached "
            f"{min(reached)}-{max(reached)} (median {statistics.median(reached):.0f})"
        )
    done = sum(epoch * n for epoch, n in epochs.items()) + sum(reached)
    if args.since and done:
        rate = done / (now - args.since)
        print(
            f"throughput: {done} cell-epochs in {now - args.since:.0f} s = {rate:.1f} per second "
            f"(unfinished cells counted to their last checkpoint: a lower bound; the window "
            f"includes the run's start-up); {args.grid_cells} cells x {args.grid_epochs} "
            f"epochs at this rate: {args.grid_cells * args.grid_epochs / rate / 3600:.2f} h"
        )


if __name__ == "__main__":
    main()
