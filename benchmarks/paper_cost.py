"""What the paper's configs cost on this machine: cell counts times measured per-cell costs.

For each config (default: ``configs/paper.yaml``, the paper's own experiments, and
``configs/extended.yaml``, training all four pairs), merged over ``config.yaml`` as
Snakemake merges them, counts the curvature cells (``cells.curvature_cells``) and the
training cells (``cells.train_cells``, which honours ``training.pairs``) per
architecture/dataset pair, and measures on the device, once per pair:

- one curvature cell (``measure`` with the config's methods, batch, d and dtype; the
  costliest variant, ``combined``);
- one full-batch GD epoch per cell, float32, strict FP32, by ``benchmarks/training.py``'s
  ``epoch_costs``: alone (today's per-cell path) and in a batch of
  ``training.batch_cells`` cells with the engine the workflow picks
  (``goldilocks.engines.batch_method``: ``vmap`` on a GPU, ``loop`` on the CPU), chunked as
  the config says (``auto`` resolved for the batch), beside the floor (counted FLOPs over
  the device's FP32 peak on a large SGEMM or convolution).

With ``--costs FILE`` (written by ``benchmarks/training.py --save FILE`` on the same
device), training costs come from that file instead of being measured again: a pair the
file did not measure the same way (architecture, dataset, images, variant, chunk
setting, engine and K) is reported as not measured and left out of the totals, which
then say so. (A device call with a fixed budget measures each thing once this way.)

Measured on ``--train-size`` images (default: the config's training set) and scaled
linearly to the config's training set; times ``epochs`` and the pair's cell count. An
estimate of compute, not a run: test-set evaluations, curvature along training, job
start-up, data staging, waiting batches and figures are not included, and cells that
diverge stop early.

    python -m benchmarks.paper_cost                      # both configs, on the GPU if any
    python -m benchmarks.paper_cost --train-size 256 --curvature-batch 16 --subspace-dim 8
        --threads 1   # a quick check on a laptop CPU (one line; the estimate says little)
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import torch

from benchmarks.timing import timed as median_time
from benchmarks.training import describe, device_name, epoch_costs, setup
from goldilocks import cells, grid
from goldilocks.config import load_merged
from goldilocks.curvature import measure, resolve_methods
from goldilocks.engines import batch_method
from goldilocks.initial import random_problem
from goldilocks.variants import DATASET_SHAPES, DATASET_SIZES

ROOT = Path(__file__).resolve().parents[1]

CONFIGS = ("configs/paper.yaml", "configs/extended.yaml")


def curvature_cost(config: dict, arch: str, dataset: str, device, args) -> float:
    """Seconds of one curvature cell (the ``combined`` variant)."""
    cur = config["curvature"]
    batch = args.curvature_batch or cur["batch_size"]
    d = args.subspace_dim or cur["subspace_dim"]
    dtype = getattr(torch, cur["dtype"])
    problem = random_problem(arch, dataset, "combined", batch, d, device, dtype)
    methods = resolve_methods(cur["hvp_method"], cur["jvp_method"], device, problem.params)
    return median_time(lambda: measure(problem, *methods), device, 1)


def saved_costs(saved: dict | None, arch, dataset, n, chunk, method, k) -> dict | None:
    """``epoch_costs``'s result for these settings from ``--costs``'s file, if it has it."""
    for case in (saved or {}).get("cases", []):
        same = (case["architecture"], case["dataset"], case["n"], case["variant"])
        batched = case["batched"].get(method, {}).get(str(k))
        if same == (arch, dataset, n, "combined") and case["chunk_setting"] == chunk and batched:
            return {
                "floor": case["floor"],
                "alone": tuple(case["alone"]),
                (method, k): tuple(batched),
            }
    return None


def training_cost(
    config: dict, arch: str, dataset: str, device, peak: float, args, saved=None
) -> dict:
    """Seconds per cell and epoch on the config's training set: alone, batched, floor
    (from ``saved``, ``--costs``'s file, when given: None if it lacks these settings)."""
    tr = config["training"]
    shape, _ = DATASET_SHAPES[dataset]
    full = tr["train_subset"] or DATASET_SIZES[dataset][0]
    n = min(args.train_size or full, full)
    k = tr["batch_cells"]
    method = batch_method("auto", device)
    if saved is None:
        costs = epoch_costs(
            arch, shape, n, [k], [method], device, peak, args.repeats, chunk=tr["chunk_size"]
        )
    elif (costs := saved_costs(saved, arch, dataset, n, tr["chunk_size"], method, k)) is None:
        print(f"{arch}/{dataset}: {args.costs} has no {method} K={k} on {n} images", flush=True)
        return None
    scale = full / n  # an epoch's cost grows linearly with the images
    return {
        "alone": costs["alone"][0] * scale,
        "batched": costs[(method, k)][0] * scale,
        "floor": costs["floor"] * scale,
        "k": k,
        "method": method,
        "chunk": costs[(method, k)][1],
    }


def estimate(path: str, config: dict, measured: dict) -> None:
    """One config's table: per pair, cells x per-cell cost, in hours."""
    n_curv = Counter((c.architecture, c.dataset) for c in cells.curvature_cells(config))
    n_train = Counter((c.architecture, c.dataset) for c in cells.train_cells(config))
    epochs = config["training"]["epochs"]
    print(f"\n{path}: {sum(n_curv.values())} curvature cells, {sum(n_train.values())} training")
    print(
        f"{'pair':22} {'curv':>5} {'s/cell':>7} {'train':>5} {'K':>3} {'engine':>6} "
        f"{'alone s/ep':>10} {'batch s/ep':>10} {'floor s/ep':>10} | {'curv h':>6} "
        f"{'alone h':>8} {'batch h':>8} {'floor h':>8}"
    )
    totals: Counter = Counter()
    missing = [pair for pair, (_, tr) in measured.items() if n_train[pair] and tr is None]
    for pair, (curv_s, tr) in measured.items():
        tr = tr or {"alone": 0.0, "batched": 0.0, "floor": 0.0, "k": 0, "method": "-"}
        hours = {
            "curv": n_curv[pair] * curv_s / 3600,
            **{k: n_train[pair] * epochs * tr[k] / 3600 for k in ("alone", "batched", "floor")},
        }
        totals.update(hours)
        print(
            f"{'/'.join(pair):22} {n_curv[pair]:5d} {curv_s:7.3f} {n_train[pair]:5d} "
            f"{tr['k']:3d} {tr['method']:>6} {tr['alone']:10.4f} {tr['batched']:10.4f} "
            f"{tr['floor']:10.4f} | {hours['curv']:6.2f} {hours['alone']:8.2f} "
            f"{hours['batched']:8.2f} {hours['floor']:8.2f}",
            flush=True,
        )
    print(
        f"total on one device: curvature {totals['curv']:.2f} h, training "
        f"{totals['alone']:.2f} h one cell at a time, {totals['batched']:.2f} h batched, "
        f"floor {totals['floor']:.2f} h; whole config batched: "
        f"{totals['curv'] + totals['batched']:.2f} h"
        + (
            f" (INCOMPLETE: training of {', '.join('/'.join(p) for p in missing)} not measured)"
            if missing
            else ""
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", nargs="+", default=list(CONFIGS))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--train-size", type=int, default=0, help="0: the config's")
    parser.add_argument("--curvature-batch", type=int, default=0, help="0: the config's")
    parser.add_argument("--subspace-dim", type=int, default=0, help="0: the config's")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads on the CPU (0: "
                        "torch's default, all cores; 1: steadier on a shared machine)")  # fmt: skip
    parser.add_argument("--costs", default=None, help="training costs measured by "
                        "benchmarks/training.py --save on this device")  # fmt: skip
    args = parser.parse_args()
    configs = {path: load_merged(path, ROOT) for path in args.config}
    device = setup(args.device, args.threads)
    if args.costs and not Path(args.costs).is_file():
        parser.error(f"--costs {args.costs}: no such file")
    saved = json.loads(Path(args.costs).read_text()) if args.costs else None
    if saved and saved["device"] != device_name(device):
        parser.error(f"--costs {args.costs}: measured on {saved['device']}, not this device")
    peak = describe(device, args.repeats, "wall")
    curvature: dict = {}  # measured once per pair and settings, shared by the configs
    training: dict = {}
    for path, config in configs.items():
        trained = set(cells.trained_pairs(config)) if cells.train_cells(config) else set()
        measured = {}
        for pair in grid.unique((p["architecture"], p["dataset"]) for p in config["pairs"]):
            ckey = (pair, repr(config["curvature"]))
            if ckey not in curvature:
                curvature[ckey] = curvature_cost(config, *pair, device, args)
            tr = config["training"]
            tkey = (pair, *(tr[k] for k in ("batch_cells", "chunk_size", "train_subset")))
            if pair in trained and tkey not in training:
                training[tkey] = training_cost(config, *pair, device, peak, args, saved)
            measured[pair] = (curvature[ckey], training.get(tkey) if pair in trained else None)
        estimate(path, config, measured)


if __name__ == "__main__":
    main()
