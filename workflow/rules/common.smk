# Workflow-side Python: config validation, wildcard constraints and thin input functions.
# What the rules build (patterns, cells, tables, figures) is planned in goldilocks.plan,
# torch-free and unit-tested; the figures are declared in goldilocks.figure_spec. Module-
# level code runs at every parse (each cluster job re-parses), so nothing here imports
# torch: the job entry points are imported on first use by job().
import os
import sys
import threading
from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError

# The package (src/) first, then users' model factories from the working directory or the
# repository root (or an installed package), for this process's jobs; script jobs
# (aggregate, figures, claims) run in their own Python and get them through PYTHONPATH.
SRC = str(Path(workflow.basedir) / "src")
MODEL_PATHS = [os.getcwd(), str(Path(workflow.basedir))]
for path in reversed([SRC, *MODEL_PATHS]):
    if path not in sys.path:
        sys.path.insert(0, path)
os.environ.update(
    PYTHONPATH=os.pathsep.join(
        p for p in (SRC, *MODEL_PATHS, os.environ.get("PYTHONPATH")) if p
    )
)

from goldilocks import cells, sources  # noqa: E402
from goldilocks.config import ConfigError, check_config  # noqa: E402
from goldilocks.plan import (  # noqa: E402
    CHECKPOINT_PATTERN,
    CURVATURE_PATTERN,
    FIGURE,
    INIT_PATTERN,
    KL_TABLE,
    SMALL_ALPHA_TABLE,
    LAYERS_PATTERN,
    MODEL_SPEC,
    TABLE,
    TRAIN_PATTERN,
    Plan,
    constraints,
)

with open(Path(workflow.current_basedir) / ".." / "schemas" / "config.schema.yaml") as fh:
    SCHEMA = yaml.safe_load(fh)
try:
    check_config(config, SCHEMA)
except ConfigError as err:
    sys.exit(f"goldilocks: {err}")

PLAN = Plan(config)
TRAINING = PLAN.training
KL_PAIRS = PLAN.kl_pairs
SMALL_ALPHA_PAIRS = PLAN.small_alpha_pairs
# training.tf32 is a train param only when true: a param that appears changes the params
# of every finished cell (a rerun trigger), and without it every cell was strict FP32.
TRAIN_PRECISION = {"tf32": True} if config["training"]["tf32"] else {}
# training.log_convergence likewise (docs/method.md section 5.8): its dense epochs add rows,
# a result; off, every finished cell keeps its recorded params.
TRAIN_CONVERGENCE = {"log_convergence": True} if config["training"]["log_convergence"] else {}


def _cores():
    """--cores, or None where it is unset (the public workflow.cores raises then)."""
    try:
        return workflow.cores
    except WorkflowError:
        return None


def _train_jobs():
    """The run's train_jobs pool (profiles/gpu), or None where it is not set."""
    value = workflow.global_resources.get("train_jobs")
    return getattr(value, "value", value)  # a Resource, or a plain number once registered


# The most cells a batch can hold in this process: 1 in a job's own process, else what
# --cores and the train_jobs pool let run at once (cells.batch_limit). When that is below
# training.batch_cells the first train job of the run says so, once (train_execution):
# a run that only redraws a figure trains nothing and hears nothing.
# Snakemake 9 documents --cores as "available to rules via workflow.cores"; for --nodes,
# the main-process test and the resource pool it documents nothing, so they are read
# through the workflow object's public, undocumented attributes (nodes, is_main_process,
# global_resources).
BATCH_LIMIT, _batch_warning = cells.batch_limit(
    config["training"]["batch_cells"],
    main_process=workflow.is_main_process,
    cores=_cores(),
    nodes=workflow.nodes,
    train_jobs=_train_jobs(),
)
_BATCH_WARNING = [_batch_warning] if _batch_warning else []
_BATCH_WARNING_LOCK = threading.Lock()


wildcard_constraints:
    **constraints(),


def job(name):
    """The entry point ``name`` of goldilocks.jobs, imported when a job first runs; a
    bad-input error ends the job with its one line (goldilocks.runtime.run_block)."""
    import importlib

    jobs = importlib.import_module("goldilocks.jobs")
    return importlib.import_module("goldilocks.runtime").run_block(getattr(jobs, name))


def _cells_of(stage, wildcards):
    return PLAN.cells_of(stage, wildcards.architecture, wildcards.dataset, wildcards.scaling)


def curvature_files(wildcards):
    """Curvature cell files (rows and layer ratios) of one pair and scaling, by name."""
    of = _cells_of("curvature", wildcards)
    return {
        "rows": [CURVATURE_PATTERN.format(**c.wildcards()) for c in of],
        "layers": [LAYERS_PATTERN.format(**c.wildcards()) for c in of],
    }


def train_files(wildcards):
    """Training cell files of one architecture/dataset pair and scaling."""
    return [TRAIN_PATTERN.format(**c.wildcards()) for c in _cells_of("training", wildcards)]


def table_parts(kind):
    """Aggregated tables of ``kind`` of every pair and scaling (goldilocks.plan)."""
    return PLAN.table_parts(kind)


def kl_tables():
    """Figure 3's table of every pair that has LayerNorm variants."""
    return PLAN.kl_tables()


def kl_scales():
    """Figure 3's alpha grid spec: the alpha_linear range with figures.kl_num points."""
    spec = dict(config["curvature"]["scales"]["alpha_linear"])
    if config["figures"]["kl_num"]:
        spec["num"] = config["figures"]["kl_num"]
    return spec


def kl_cells(wildcards):
    """(variant, seed) of the pair's LayerNorm variants (figure 3)."""
    return PLAN.kl_cells.get((wildcards.architecture, wildcards.dataset), [])


def _init_files(wildcards, cells):
    """Init files of the pair's (variant, seed) ``cells``."""
    return [INIT_PATTERN.format(**vars(wildcards), variant=v, seed=s) for v, s in cells]


def kl_init_files(wildcards):
    """Init files of the pair's LayerNorm variants, one per variant and seed (figure 3)."""
    return _init_files(wildcards, kl_cells(wildcards))


def small_alpha_cells(wildcards):
    """(variant, seed) of the pair's small-alpha side table."""
    return PLAN.small_alpha_cells.get((wildcards.architecture, wildcards.dataset), [])


def small_alpha_grids(wildcards):
    """Per variant of the side table, its joint_residual alphas."""
    return PLAN.small_alpha_grids(wildcards.architecture)


def small_alpha_init_files(wildcards):
    """Init files of the pair's small-alpha side table, one per variant and seed."""
    return _init_files(wildcards, small_alpha_cells(wildcards))


def figure_tables(n):
    """Input function: the pair tables figure ``n`` is drawn from, by name. A figure
    whose data the config does not produce stops the DAG build with one line."""

    def tables(wildcards):
        pair = (wildcards.architecture, wildcards.dataset)
        problem = PLAN.figure_problem(n, pair)
        if problem:
            # one job draws both files: name the pair, not the one of them asked for
            asked = FIGURE.format(n=n, ext="{pdf,png}", **dict(wildcards.items()))
            sys.exit(f"goldilocks: {problem}; asked for {asked}")
        return PLAN.figure_tables(n, *pair)

    return tables


def figure_files(n):
    """Input function: every pair's files of figure ``n``, or a one-line exit when the
    config has no data for it."""

    def files(wildcards):
        problem = PLAN.figure_problem(n)
        if problem:
            sys.exit(f"goldilocks: {problem}; asked for rule fig{n}")
        return PLAN.figure_outputs(n)

    return files


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
    """The tables the claims are evaluated on, by name (training and convergence, kl and
    small_alpha when the config produces them)."""
    tables = {"curvature": rules.tables.output.curvature, "zone": rules.tables.output.zone}
    if TRAINING:
        tables["training"] = rules.tables.output.training
        tables["convergence"] = rules.tables.output.convergence
    if KL_PAIRS:
        tables["kl"] = rules.tables.output.kl
    if SMALL_ALPHA_PAIRS:
        tables["small_alpha"] = rules.tables.output.small_alpha
    return tables


def final_targets():
    """The default targets: the tables, the claims and every figure the config has data for
    (called by rule all, after every rule is defined)."""
    return [
        *rules.tables.output,
        rules.claims.output.table,
        rules.claims.output.html,
        *PLAN.figure_targets(),
    ]
