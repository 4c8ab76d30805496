"""TF32 against strict FP32 in training: final accuracies of a set of cells beside the
spread over seeds (docs/performance.md, "Training many cells at once").

For each variant (``--variants``), temperature scaling at ``--scales``, base rates
``--lrs`` and seeds ``--seeds``, LeNet-300-100 on Fashion-MNIST (all 60,000 training and
10,000 test images unless ``--train-subset`` / ``--test-subset``) trains ``--epochs`` of
full-batch GD as the workflow trains a cell: initialisation of the seed
(``initial.draw``), alpha, T and rate of the cell (``cells.TrainCell``), float32, all
cells of a variant in one batch (``training.train_batched``, ``vmap`` on a GPU;
``chunk_size: auto``; with a subset, every cell gets seed 0's, where the workflow would
draw one per seed). Each batch trains twice from the same initialisations: strict FP32,
then TF32 (``runtime.PRECISION(True)``, as a ``training.tf32`` job enters).

Per (variant, T, rate): the mean FP32 final train and test accuracy over seeds, their
spread over seeds (max - min), and TF32 - FP32 (mean over seeds and the largest |difference|
of one seed); cells that diverge in either precision are counted apart. The summary says
in how many groups the largest TF32 difference stays within the FP32 seed spread. On the
CPU TF32 does nothing, so the differences there are exactly 0 (a rehearsal of the
script, e.g. ``--dataset synthetic --epochs 5``).

    python benchmarks/tf32.py --device cuda                 # defaults below, full sets
    python benchmarks/tf32.py --dataset synthetic --epochs 5 --seeds 0,1   # CPU check
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import yaml

from benchmarks.timing import device_or_exit, sync
from benchmarks.training import device_name
from goldilocks import data as datasets
from goldilocks import initial
from goldilocks.cells import TrainCell
from goldilocks.engines import batch_method
from goldilocks.grid import scale_token
from goldilocks.memory import resolve_chunk_size
from goldilocks.runtime import PRECISION, configure_torch
from goldilocks.training import TrainState, train_batched

ROOT = Path(__file__).resolve().parents[1]

ARCH = "lenet300100"


def final(state: TrainState) -> tuple[float, float, bool]:
    """(train accuracy, test accuracy, diverged) of a cell's last row."""
    row = state.rows[-1]
    return row["train_acc"], row["test_acc"], bool(row["diverged"])


def train_twice(cells: list[TrainCell], prepared, args, device) -> dict:
    """Every cell of one variant in one batch, strict FP32 then TF32, from the same
    initialisations: ``{cell: (fp32 final, tf32 final)}`` and the two batches' seconds."""
    train_data, test_data = datasets.training_data(
        prepared, 0, args.train_subset, args.test_subset, torch.float32, device
    )
    inits = {
        seed: initial.draw(ARCH, args.dataset, cells[0].variant, seed, prepared, 1, 1)
        for seed in {c.seed for c in cells}
    }
    problems = [
        initial.problem(
            inits[c.seed],
            ARCH,
            args.dataset,
            c.variant,
            c.alpha,
            c.temperature,
            device,
            torch.float32,
        )
        for c in cells
    ]
    model = problems[0].model
    chunk = resolve_chunk_size("auto", model, train_data[0], len(cells))
    out, seconds = {}, []
    for tf32 in (False, True):
        states = [TrainState({k: v.clone() for k, v in p.params.items()}) for p in problems]
        start = time.perf_counter()
        with PRECISION(tf32):
            train_batched(
                model,
                states,
                train_data,
                test_data,
                [c.temperature for c in cells],
                [c.lr for c in cells],
                args.epochs,
                args.epochs,
                chunk,
                method="auto",
            )
            sync(device)
        seconds.append(time.perf_counter() - start)
        for c, state in zip(cells, states, strict=True):
            out.setdefault(c, []).append(final(state))
    return {"finals": out, "seconds": seconds, "chunk": chunk}


def report(variant: str, finals: dict) -> tuple[int, int, int]:
    """Print one line per (T, rate); return (groups, groups within the seed spread,
    diverged cells)."""
    groups: dict = {}
    for c, pair in finals.items():
        groups.setdefault((c.scale, c.lr_base), []).append(pair)
    within = diverged = 0
    for (scale, lr), pairs in sorted(groups.items(), key=lambda g: tuple(map(float, g[0]))):
        ok = [(a, b) for a, b in pairs if not (a[2] or b[2])]
        diverged += len(pairs) - len(ok)
        if not ok:
            print(f"{variant:12} {scale:>8} {lr:>8}   all {len(pairs)} seeds diverged")
            continue
        cols = []
        for i in (0, 1):  # train, test accuracy
            fp32 = [a[i] for a, _ in ok]
            diff = [b[i] - a[i] for a, b in ok]
            spread = max(fp32) - min(fp32)
            cols.append(
                (statistics.fmean(fp32), spread, statistics.fmean(diff), max(map(abs, diff)))
            )
        fits = all(worst <= spread for _, spread, _, worst in cols)
        within += fits
        print(
            f"{variant:12} {scale:>8} {lr:>8} {len(ok):3d}/{len(pairs):<3d}"
            + "".join(f" {m:7.4f} {s:7.4f} {d:+9.5f} {w:8.5f}" for m, s, d, w in cols)
            + ("" if fits else "  TF32 outside the seed spread")
        )
    return len(groups), within, diverged


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--dataset", default="fmnist", help="fmnist or synthetic")
    parser.add_argument("--variants", default="homogeneous,combined", help="comma-separated")
    parser.add_argument("--scales", default="0.1,1,10", help="T of temperature scaling")
    parser.add_argument("--lrs", default="0.1,1", help="base rates (lr = base x T)")
    parser.add_argument("--seeds", default="0,1,2,3", help="the spread is over these")
    parser.add_argument("--epochs", type=int, default=200, help="full-batch GD epochs")
    parser.add_argument("--train-subset", type=int, default=None, help="images (default all)")
    parser.add_argument("--test-subset", type=int, default=None, help="images (default all)")
    args = parser.parse_args()
    configure_torch(0)  # TF32 off
    device = device_or_exit(args.device)
    mirrors = yaml.safe_load((ROOT / "config.yaml").read_text())["data"]["mirrors"]
    with tempfile.TemporaryDirectory() as root:
        try:
            prepared = datasets.prepare(args.dataset, mirrors, root, download=False)
        except datasets.DatasetUnavailable as err:
            parser.exit(1, f"tf32.py: {err}\n")
    name = device_name(device) + (" (TF32 no-op)" if device.type == "cpu" else "")
    print(f"{name}, torch {torch.__version__}, engine {batch_method('auto', device)}, "
          f"{ARCH}/{args.dataset}, {args.epochs} epochs")  # fmt: skip
    print(f"{'variant':12} {'T':>8} {'base lr':>8} {'ok':>7}" + "".join(
        f" {s + ' ' + c:>7}" if c == "mean" else f" {c:>{w}}"
        for s in ("train", "test")
        for c, w in (("mean", 7), ("spread", 7), ("tf32-fp32", 9), ("max|d|", 8))
    ))  # fmt: skip
    totals = [0, 0, 0]
    for variant in args.variants.split(","):
        cells = [
            TrainCell(
                ARCH,
                args.dataset,
                variant,
                "temperature",
                scale_token(float(t)),
                seed,
                lr_base=scale_token(float(lr)),
            )
            for t in args.scales.split(",")
            for lr in args.lrs.split(",")
            for seed in map(int, args.seeds.split(","))
        ]
        run = train_twice(cells, prepared, args, device)
        counts = report(variant, run["finals"])
        totals = [a + b for a, b in zip(totals, counts, strict=True)]
        fp32_s, tf32_s = run["seconds"]
        print(f"  {variant}: {len(cells)} cells in one batch (chunk {run['chunk']}): FP32 "
              f"{fp32_s:.1f} s, TF32 {tf32_s:.1f} s ({fp32_s / max(tf32_s, 1e-9):.2f}x)",
              flush=True)  # fmt: skip
    groups, within, diverged = totals
    print(f"TF32 within the FP32 seed spread (train and test accuracy) in {within} of "
          f"{groups} groups; {diverged} cells diverged in either precision (left out)")  # fmt: skip


if __name__ == "__main__":
    main()
