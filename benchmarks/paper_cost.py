"""What the paper grid (configs/paper.yaml) costs on this machine, cell by cell.

Counts the curvature and training cells of the config per architecture/dataset pair, and
measures on the device, in the config's dtypes and settings: one curvature cell
(``measure`` with the ``auto`` methods, batch and d from the config) and one full-batch GD
epoch on a random training set of the dataset's real size and shape (chunked as in the
config). Prints the per-cell costs and their product with the cell counts: an estimate
of the grid's compute time, not a run of it (test-set evaluations, job start-up, data
staging and figures are not included; 1,000-epoch cells that diverge stop early).

    python benchmarks/paper_cost.py [--config configs/paper.yaml] [--device auto]
    python benchmarks/paper_cost.py --train-size 2000   # a quick look on a laptop
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from timing import timed  # noqa: E402

from goldilocks import cells, grid  # noqa: E402
from goldilocks.config import check_config  # noqa: E402
from goldilocks.curvature import measure, resolve_methods  # noqa: E402
from goldilocks.initial import random_problem  # noqa: E402
from goldilocks.runtime import configure_torch, resolve_device  # noqa: E402
from goldilocks.training import loss_and_grad  # noqa: E402
from goldilocks.variants import DATASET_SHAPES  # noqa: E402

TRAIN_SIZES = {"fmnist": 60_000, "cifar10": 50_000, "synthetic": 2_048}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "paper.yaml"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--train-size", type=int, default=0, help="0: the dataset's size")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with open(args.config) as fh:
        config = yaml.safe_load(fh)
    with open(ROOT / "workflow" / "schemas" / "config.schema.yaml") as fh:
        check_config(config, yaml.safe_load(fh))
    configure_torch(0)
    device = resolve_device(args.device)
    cur, tr = config["curvature"], config["training"]
    cdtype, tdtype = getattr(torch, cur["dtype"]), getattr(torch, tr["dtype"])
    n_curv = Counter((c.architecture, c.dataset) for c in cells.curvature_cells(config))
    n_train = Counter((c.architecture, c.dataset) for c in cells.train_cells(config))
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"{args.config}: {name}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(
        f"{'pair':22} {'curv cells':>10} {'s/cell':>8} {'train cells':>11} {'s/epoch':>8} "
        f"{'epochs':>6} | {'curvature h':>11} {'training h':>10}"
    )
    total = 0.0
    for arch, dataset in grid.unique((p["architecture"], p["dataset"]) for p in config["pairs"]):
        shape, classes = DATASET_SHAPES[dataset]
        problem = random_problem(  # the costliest variant
            arch, dataset, "combined", cur["batch_size"], cur["subspace_dim"], device, cdtype
        )
        methods = resolve_methods(cur["hvp_method"], cur["jvp_method"], device, problem.params)
        cell = timed(lambda p=problem, m=methods: measure(p, *m), device, 1)
        n = args.train_size or tr.get("train_subset") or TRAIN_SIZES[dataset]
        g = torch.Generator().manual_seed(3)
        x = torch.randn(n, *shape, generator=g).to(device=device, dtype=tdtype)
        y = torch.randint(0, classes, (n,), generator=g).to(device)
        model = problem.model
        params = {k: v.to(dtype=tdtype) for k, v in problem.params.items()}

        def epoch(x=x, y=y, params=params, model=model):
            _, grads = loss_and_grad(model, params, x, y, 1.0, tr["chunk_size"])
            with torch.no_grad():
                return {k: v - 0.01 * grads[k] for k, v in params.items()}

        per_epoch = timed(epoch, device, args.repeats)
        curv_h = n_curv[(arch, dataset)] * cell / 3600
        train_h = n_train[(arch, dataset)] * tr["epochs"] * per_epoch / 3600
        total += curv_h + train_h
        print(
            f"{arch + '/' + dataset:22} {n_curv[(arch, dataset)]:10d} {cell:8.3f} "
            f"{n_train[(arch, dataset)]:11d} {per_epoch:8.4f} {tr['epochs']:6d} | "
            f"{curv_h:11.2f} {train_h:10.2f}",
            flush=True,
        )
        del x, y
    print(f"estimated compute: {total:.1f} h on one device (jobs one at a time)")


if __name__ == "__main__":
    main()
