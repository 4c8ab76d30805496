# Workflow-side Python: config validation, the grid's cells, wildcard constraints and
# input functions. Module-level code runs at every parse (each cluster job re-parses), so
# nothing here imports torch: the job entry points are imported on first use by job().
# What a variant is (L, 𝓛, k, LayerNorm or not) comes from goldilocks.variants; users'
# models (config `models`) are registered there by check_config.
import os
import sys
import threading
from pathlib import Path

import yaml

SRC = str(Path(workflow.basedir) / "src")
# Users' model factories are imported from the working directory or the repository root
# (or an installed package), by the jobs of this process and by script jobs alike.
MODEL_PATHS = [os.getcwd(), str(Path(workflow.basedir))]
for path in reversed([SRC, *MODEL_PATHS]):
    if path not in sys.path:
        sys.path.insert(0, path)
# Script jobs (aggregate, figures) run in their own Python: give them the package too.
os.environ.update(
    PYTHONPATH=os.pathsep.join(
        p for p in (SRC, *MODEL_PATHS, os.environ.get("PYTHONPATH")) if p
    )
)

from goldilocks import cells, grid, variants  # noqa: E402
from goldilocks.config import ConfigError, check_config  # noqa: E402

with open(Path(workflow.current_basedir) / ".." / "schemas" / "config.schema.yaml") as fh:
    SCHEMA = yaml.safe_load(fh)
try:
    check_config(config, SCHEMA)
except ConfigError as err:
    sys.exit(f"goldilocks: {err}")

CURVATURE_CELLS = cells.curvature_cells(config)
TRAIN_CELLS = cells.train_cells(config)
PAIRS = grid.unique((p["architecture"], p["dataset"]) for p in config["pairs"])
TRAINING = bool(TRAIN_CELLS)
# The pairs with training cells (training.pairs; default every pair).
TRAINED_PAIRS = grid.unique(cells.trained_pairs(config)) if TRAINING else []
# training.tf32 is a train param only when true: a param that appears changes the params
# of every finished cell (a rerun trigger), and without it every cell was strict FP32.
TRAIN_PRECISION = {"tf32": True} if config["training"]["tf32"] else {}


def _train_jobs():
    """The run's train_jobs pool (profiles/gpu), or None where it is not set."""
    value = workflow.global_resources.get("train_jobs")
    return getattr(value, "value", value)  # a Resource, or a plain number once registered


# The most cells a batch can hold in this process: 1 in a job's own process, else what
# --cores and the train_jobs pool let run at once (cells.batch_limit). When that is below
# training.batch_cells the first train job of the run says so, once (train_execution):
# a run that only redraws a figure trains nothing and hears nothing.
BATCH_LIMIT, _batch_warning = cells.batch_limit(
    config["training"]["batch_cells"],
    main_process=workflow.is_main_process,
    cores=workflow._cores,  # None-safe (workflow.cores raises where --cores is unset)
    nodes=workflow.nodes,
    train_jobs=_train_jobs(),
)
_BATCH_WARNING = [_batch_warning] if _batch_warning else []
_BATCH_WARNING_LOCK = threading.Lock()
# The (architecture, dataset, scaling) parts that have cells, per stage.
PARTS = {
    "curvature": {(c.architecture, c.dataset, c.scaling) for c in CURVATURE_CELLS},
    "training": {(c.architecture, c.dataset, c.scaling) for c in TRAIN_CELLS},
}
# Scalings with curvature cells (zone, figures 1, 6 and 7) and with training cells (2, 4,
# 5 and 7).
SCALINGS_OF = {
    "curvature": list(config["curvature"]["scalings"]),
    "training": list(config["training"]["scalings"]) if TRAINING else [],
}
# Figure 3: per pair, its LayerNorm variants with k = 1 (cells.kl_variants), every seed.
KL_CELLS = {
    pair: [(v, s) for v in cells.kl_variants(config, pair[0]) for s in config["seeds"]]
    for pair in PAIRS
}
KL_PAIRS = [pair for pair in PAIRS if KL_CELLS[pair]]
# Per figure: the tables it is drawn from (kind: scalings; None = every configured one),
# and what the config must have for the figure to have data.
FIGURES = (1, 2, 3, 4, 5, 6, 7)
FIGURE_INPUTS = {
    1: {"curvature": None, "zone": None},
    2: {"training": ["temperature"], "zone": ["temperature"]},
    3: {"kl": None},
    4: {"training": ["alpha"], "zone": ["alpha"]},
    5: {"training": ["temperature"], "zone": ["temperature"]},
    6: {"curvature": None},
    7: {"curvature": None, "training": None, "zone": None},
}
TRAINED = "in training.scalings (and training.enabled: true)"
# Figures drawn from training cells: only for the trained pairs.
TRAINING_FIGURES = (2, 4, 5, 7)
FIGURE_NEEDS = {
    2: (f"'temperature' {TRAINED}", "temperature" in SCALINGS_OF["training"]),
    3: ("a LayerNorm variant with k = 1 in variants (layernorm, combined, ...)", bool(KL_PAIRS)),
    4: (f"'alpha' {TRAINED}", "alpha" in SCALINGS_OF["training"]),
    5: (f"'temperature' {TRAINED}", "temperature" in SCALINGS_OF["training"]),
    7: (f"a scaling {TRAINED}", TRAINING),
}

wildcard_constraints:
    architecture="|".join(variants.architecture_names()),
    dataset="|".join(variants.DATASETS),
    variant="|".join(variants.variant_names()),
    scaling="|".join(grid.SCALINGS),
    scale=r"[0-9][0-9.e+-]*",
    lr_base=r"[0-9][0-9.e+-]*",
    seed=r"\d+",
    n=r"[1-7]",


def job(name):
    """The entry point ``name`` of goldilocks.jobs, imported when a job first runs; a
    bad-input error ends the job with its one line (goldilocks.runtime.run_block)."""
    import importlib

    jobs = importlib.import_module("goldilocks.jobs")
    return importlib.import_module("goldilocks.runtime").run_block(getattr(jobs, name))


def _cells_of(grid_cells, wildcards):
    """The cells of one architecture/dataset pair and scaling."""
    keys = (wildcards.architecture, wildcards.dataset, wildcards.scaling)
    return [c for c in grid_cells if (c.architecture, c.dataset, c.scaling) == keys]


def curvature_files(wildcards):
    """Curvature cell files (rows and layer ratios) of one pair and scaling, by name."""
    of = _cells_of(CURVATURE_CELLS, wildcards)
    return {
        "rows": [CURVATURE_PATTERN.format(**c.wildcards()) for c in of],
        "layers": [LAYERS_PATTERN.format(**c.wildcards()) for c in of],
    }


def train_files(wildcards):
    """Training cell files of one architecture/dataset pair and scaling."""
    return [TRAIN_PATTERN.format(**c.wildcards()) for c in _cells_of(TRAIN_CELLS, wildcards)]


def table_parts(kind, scalings=None, **pair):
    """Aggregated tables of ``kind``, one per pair and scaling (``pair``: just that one).

    ``scalings``: those wanted (default every configured one); unconfigured ones, and
    (pair, scaling) parts without a cell (joint_residual of a pair with no residual
    variant, an untrained pair), are left out. ``kind`` curvature, layer_ratios or zone
    come from the curvature cells, training from the training cells.
    """
    configured = SCALINGS_OF["training" if kind == "training" else "curvature"]
    present = PARTS["training" if kind == "training" else "curvature"]
    pairs = [(pair["architecture"], pair["dataset"])] if pair else PAIRS
    return [
        TABLE.format(kind=kind, architecture=a, dataset=d, scaling=s)
        for a, d in pairs
        for s in configured
        if (scalings is None or s in scalings) and (a, d, s) in present
    ]


def kl_tables():
    """Figure 3's table of every pair that has LayerNorm variants."""
    return [KL_TABLE.format(architecture=a, dataset=d) for a, d in KL_PAIRS]


def kl_scales():
    """Figure 3's alpha grid spec: the alpha_linear range with figures.kl_num points."""
    spec = dict(config["curvature"]["scales"]["alpha_linear"])
    if config["figures"]["kl_num"]:
        spec["num"] = config["figures"]["kl_num"]
    return spec


def kl_cells(wildcards):
    """(variant, seed) of the pair's LayerNorm variants (figure 3)."""
    return KL_CELLS.get((wildcards.architecture, wildcards.dataset), [])


def kl_init_files(wildcards):
    """Init files of the pair's LayerNorm variants, one per variant and seed (figure 3)."""
    return [
        INIT_PATTERN.format(**vars(wildcards), variant=v, seed=s) for v, s in kl_cells(wildcards)
    ]


def figure_problem(n, pair=None):
    """Why figure ``n`` (of ``pair``, when given) cannot be drawn from this config, or
    None when it can."""
    requirement, present = FIGURE_NEEDS.get(n, ("", True))
    if present and pair is not None and pair not in figure_pairs(n):
        a, d = pair
        present, requirement = False, f"LayerNorm variants with k = 1 in the pair {a}/{d}"
        if pair not in PAIRS:
            configured = ", ".join(f"{x}/{y}" for x, y in PAIRS)
            requirement = f"{a}/{d} in pairs (configured: {configured})"
        elif n in TRAINING_FIGURES:
            trained = ", ".join(f"{x}/{y}" for x, y in TRAINED_PAIRS)
            requirement = f"{a}/{d} in training.pairs (trained: {trained})"
    return None if present else f"figure {n} needs {requirement}"


def figure_pairs(n):
    """The pairs figure ``n`` is drawn for: figure 3 only those with LayerNorm variants,
    the training figures only the trained pairs."""
    if n == 3:
        return KL_PAIRS
    return TRAINED_PAIRS if n in TRAINING_FIGURES else PAIRS


def figure_tables(n):
    """Input function: the pair tables figure ``n`` is drawn from, by name.

    A figure whose data the config does not produce stops the DAG build with one line.
    """

    def tables(wildcards):
        keys = dict(wildcards.items())
        problem = figure_problem(n, (keys["architecture"], keys["dataset"]))
        if problem:
            # one job draws both files: name the pair, not the one of them asked for
            asked = FIGURE.format(n=n, ext="{pdf,png}", **keys)
            sys.exit(f"goldilocks: {problem}; asked for {asked}")
        return {
            kind: KL_TABLE.format(**keys) if kind == "kl" else table_parts(kind, scalings, **keys)
            for kind, scalings in FIGURE_INPUTS[n].items()
        }

    return tables


def figure_files(n):
    """Input function: :func:`figure_outputs` of figure ``n``, or a one-line exit when
    the config has no data for it."""

    def files(wildcards):
        problem = figure_problem(n)
        if problem:
            sys.exit(f"goldilocks: {problem}; asked for rule fig{n}")
        return figure_outputs(n)

    return files


def figure_outputs(n):
    """PDF and PNG of figure ``n`` for every pair it is drawn for."""
    return [
        FIGURE.format(n=n, architecture=a, dataset=d, ext=e)
        for a, d in figure_pairs(n)
        for e in ("pdf", "png")
    ]


def model_spec(wildcards):
    """A registered model's config entry as canonical JSON (rule model_spec's param)."""
    import json

    if wildcards.architecture not in config["models"]:
        sys.exit(f"goldilocks: {wildcards.architecture} is not a model under `models`")
    return json.dumps(config["models"][wildcards.architecture], sort_keys=True)


def model_spec_file(wildcards):
    """Input function of init: the model's spec file for a registered model, else none."""
    if wildcards.architecture in config["models"]:
        return MODEL_SPEC.format(architecture=wildcards.architecture)
    return []


def checkpoint_file(wildcards):
    """The training checkpoint of one train job (a side file, not an output)."""
    return CHECKPOINT_PATTERN.format(**dict(wildcards.items()))


def train_execution(wildcards):
    """How one train job runs, none of it a result: its checkpoint file (a side file, not
    an output) and how often it saves, and how many cells it may train with
    (training.batch_cells, at most what runs at once here: BATCH_LIMIT; batch_wait).
    Passed to the job, not as params (a rerun trigger). The first call of the run says
    why batches are smaller than batch_cells, where they are."""
    with _BATCH_WARNING_LOCK:
        if _BATCH_WARNING:
            sys.stderr.write(_BATCH_WARNING.pop() + "\n")  # one write: one whole line
    tr = config["training"]
    return {
        "checkpoint": checkpoint_file(wildcards),
        "checkpoint_every": tr["checkpoint_every"],
        "batch_cells": BATCH_LIMIT,
        "batch_wait": tr["batch_wait"],
    }


def claims_inputs(wildcards):
    """The tables the claims are evaluated on, by name (training and kl when the config
    produces them)."""
    tables = {"curvature": rules.tables.output.curvature, "zone": rules.tables.output.zone}
    if TRAINING:
        tables["training"] = rules.tables.output.training
    if KL_PAIRS:
        tables["kl"] = rules.tables.output.kl
    return tables


def final_targets():
    """The default targets: the tables, the claims and every figure the config has data for
    (called by rule all, after every rule is defined)."""
    targets = [*rules.tables.output, rules.claims.output.table, rules.claims.output.html]
    for n in FIGURES:
        if figure_problem(n) is None:
            targets += figure_outputs(n)
    return targets


CURVATURE_PATTERN = (
    "results/curvature/{architecture}_{dataset}/{variant}/{scaling}/scale{scale}_seed{seed}.parquet"
)
# A curvature cell's per-layer weight-to-gradient ratios, beside its row.
LAYERS_PATTERN = CURVATURE_PATTERN.replace(".parquet", ".layers.parquet")
TRAIN_PATTERN = (
    "results/train/{architecture}_{dataset}/{variant}/{scaling}/"
    "scale{scale}_lr{lr_base}_seed{seed}.parquet"
)
TABLE = "results/aggregate/{kind}_{architecture}_{dataset}_{scaling}.parquet"
INIT_PATTERN = "results/init/{architecture}_{dataset}/{variant}/seed{seed}.pt"
# A registered model's config entry; its init jobs read it (rule model_spec).
MODEL_SPEC = "results/models/{architecture}.json"
KL_TABLE = "results/kl/{architecture}_{dataset}.parquet"
# Training checkpoints: side files of running train jobs, deleted when the cell finishes.
CHECKPOINT_PATTERN = TRAIN_PATTERN.replace("results/train/", "results/checkpoints/").replace(
    ".parquet", ".pt"
)
FIGURE = "results/figures/fig{n}_{architecture}_{dataset}.{ext}"
