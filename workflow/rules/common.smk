# Workflow-side Python: config validation, the grid as tables, wildcard constraints and
# input functions. Module-level code runs at every parse (each cluster job re-parses), so
# nothing here imports torch: the job entry points are imported on first use by job().
import os
import sys
from pathlib import Path

import yaml

SRC = str(Path(workflow.basedir) / "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)
# Script jobs (aggregate, figures) run in their own Python: give them the package too.
os.environ.update(
    PYTHONPATH=os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p)
)

from goldilocks import grid  # noqa: E402
from goldilocks.architectures import ARCHITECTURES, DATASETS, SCALINGS, VARIANTS  # noqa: E402
from goldilocks.config import ConfigError, check_config  # noqa: E402

with open(Path(workflow.current_basedir) / ".." / "schemas" / "config.schema.yaml") as fh:
    SCHEMA = yaml.safe_load(fh)
try:
    check_config(config, SCHEMA)
except ConfigError as err:
    sys.exit(f"goldilocks: {err}")

CURVATURE_CELLS = grid.curvature_cells(config)
TRAIN_CELLS = grid.train_cells(config)
PAIRS = grid.unique((p["architecture"], p["dataset"]) for p in config["pairs"])
TRAINING = bool(TRAIN_CELLS)

wildcard_constraints:
    architecture="|".join(ARCHITECTURES),
    dataset="|".join(DATASETS),
    variant="|".join(VARIANTS),
    scaling="|".join(SCALINGS),
    scale=r"[0-9][0-9.e+-]*",
    lr_base=r"[0-9][0-9.e+-]*",
    seed=r"\d+",
    n=r"[1-6]",


def job(name):
    """The entry point ``name`` of goldilocks.jobs, imported when a job first runs."""
    import importlib

    return getattr(importlib.import_module("goldilocks.jobs"), name)


def curvature_files(wildcards):
    """Curvature cell files of one architecture/dataset pair."""
    return [
        CURVATURE_PATTERN.format(**vars(c))
        for c in CURVATURE_CELLS
        if (c.architecture, c.dataset) == (wildcards.architecture, wildcards.dataset)
    ]


def train_files(wildcards):
    """Training cell files of one architecture/dataset pair."""
    return [
        TRAIN_PATTERN.format(**vars(c))
        for c in TRAIN_CELLS
        if (c.architecture, c.dataset) == (wildcards.architecture, wildcards.dataset)
    ]


def checkpoint_file(wildcards):
    """The training checkpoint of one train job (a side file, not an output)."""
    return CHECKPOINT_PATTERN.format(**dict(wildcards.items()))


def pair_tables(kind):
    """Per-pair aggregated tables of ``kind`` (curvature or training)."""
    return [PAIR_TABLE.format(kind=kind, architecture=a, dataset=d) for a, d in PAIRS]


def final_targets():
    """The default targets: the tables, figure 1, and figure 2 when training is on."""
    targets = ["results/curvature.parquet", "results/goldilocks_zone.parquet"]
    numbers = [1]
    if TRAINING:
        targets.append("results/training.parquet")
        numbers.append(2)
    for a, d in PAIRS:
        for n in numbers:
            targets += [FIGURE.format(n=n, architecture=a, dataset=d, ext=e) for e in ("pdf", "png")]
    return targets


CURVATURE_PATTERN = (
    "results/curvature/{architecture}_{dataset}/{variant}/{scaling}/scale{scale}_seed{seed}.parquet"
)
TRAIN_PATTERN = (
    "results/train/{architecture}_{dataset}/{variant}/{scaling}/"
    "scale{scale}_lr{lr_base}_seed{seed}.parquet"
)
# Training checkpoints: side files of running train jobs, deleted when the cell finishes.
CHECKPOINT_PATTERN = TRAIN_PATTERN.replace("results/train/", "results/checkpoints/").replace(
    ".parquet", ".pt"
)
PAIR_TABLE = "results/aggregate/{kind}_{architecture}_{dataset}.parquet"
FIGURE = "results/figures/fig{n}_{architecture}_{dataset}.{ext}"
