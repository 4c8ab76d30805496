"""Cells built from the config and from wildcards: keys, alpha, T, lr and identity columns."""

import math

import pytest

from goldilocks.cells import (
    CURVATURE_IDENTITY,
    TRAIN_IDENTITY,
    CurvatureCell,
    TrainCell,
    batch_limit,
    curvature_cells,
    shared_curvature_cells,
    train_cells,
    trained_pairs,
)
from goldilocks.grid import lr_factor


def _config(**training):
    grid = {"log10_min": -1, "log10_max": 1, "num": 3}
    scales = {"alpha": grid, "alpha_linear": {**grid, "times_depth": True}, "temperature": grid}
    return {
        "pairs": [{"architecture": "lenet300100", "dataset": "synthetic"}],
        "variants": ["homogeneous", "layernorm"],
        "seeds": [0, 1],
        "curvature": {"scalings": ["alpha", "temperature", "joint"], "scales": scales},
        "training": {
            "scalings": ["temperature"],
            "scales": scales,
            "lr_base": [0.1, 1.0],
            **training,
        },
    }


def test_cell_counts_and_keys():
    cells = curvature_cells(_config())
    assert len(cells) == 2 * 3 * 3 * 2
    ln_alpha = sorted(
        {float(c.scale) for c in cells if c.variant == "layernorm" and c.scaling == "alpha"}
    )
    assert ln_alpha == [1e-3, 1.0, 1e3]  # alpha_linear grid, times L = 3
    assert len(set(cells)) == len(cells)
    assert len(train_cells(_config())) == 2 * 3 * 2 * 2
    assert len(train_cells(_config(seeds=[0]))) == 2 * 3 * 2
    assert train_cells(_config(enabled=False)) == []


def test_a_cell_from_wildcards_equals_the_grid_cell():
    """Wildcards are strings in any spelling of the number; the cell is canonical."""
    grid_cell = next(
        c for c in train_cells(_config()) if c.variant == "layernorm" and c.lr_base == "1"
    )
    wildcards = {**grid_cell.wildcards(), "seed": str(grid_cell.seed), "lr_base": "1.000"}
    wildcards["scale"] = repr(float(grid_cell.scale))
    rebuilt = TrainCell.from_wildcards(wildcards, alpha_lr_rule="paper")
    assert rebuilt == grid_cell
    assert "{scale}_lr{lr_base}_seed{seed}".format(**rebuilt.wildcards()).endswith("_lr1_seed0")


def test_identity_columns_and_the_rates():
    cell = TrainCell("lenet300100", "fmnist", "residual", "alpha", "0.1", 2, "0.5")
    identity = cell.identity()
    assert tuple(identity) == TRAIN_IDENTITY
    assert identity["scale"] == 0.1 and identity["seed"] == 2
    assert (cell.alpha, cell.temperature) == (0.1, 1.0)
    assert cell.lr == pytest.approx(0.5 * lr_factor("alpha", 0.1, "lenet300100", "residual"))
    small = TrainCell(
        *[getattr(cell, k) for k in TRAIN_IDENTITY[:4]], "0.1", 2, "0.5", "residual_small_alpha"
    )
    assert small.lr == pytest.approx(0.5 * 0.1 ** (2 - 2))  # L - 𝓛 = 2
    joint = CurvatureCell("lenet300100", "fmnist", "residual", "joint", "10", 0)
    assert tuple(joint.identity()) == CURVATURE_IDENTITY
    assert joint.temperature == 1e4  # k = L = 4
    assert joint.description.residual_depth == 2


def test_joint_residual_for_every_variant_borrowing_the_joint_cells_where_m_is_k():
    config = _config()
    config["variants"] = ["homogeneous", "residual", "combined", "layernorm"]
    config["curvature"]["scalings"] = ["joint", "joint_residual"]
    cells = curvature_cells(config)
    own = [c for c in cells if c.scaling == "joint_residual"]
    # m != k: cells of their own (residual m = 2, k = 4; layernorm m = 3, k = 1)
    assert {c.variant for c in own} == {"residual", "layernorm"}
    assert len([c for c in cells if c.scaling == "joint"]) == 4 * 3 * 2
    m = {
        c.variant: round(math.log10(c.temperature) / math.log10(c.alpha))
        for c in own
        if c.alpha != 1
    }
    assert m == {"residual": 2, "layernorm": 3}
    # m = k (homogeneous 3, combined 1): the joint cells are the curve
    shared = shared_curvature_cells(config)
    assert {(c.variant, c.scaling) for c in shared} == {
        ("homogeneous", "joint"),
        ("combined", "joint"),
    }
    assert len(shared) == 2 * 3 * 2
    # without joint configured, every variant computes its own
    config["curvature"]["scalings"] = ["joint_residual"]
    alone = curvature_cells(config)
    assert len(alone) == 4 * 3 * 2 and shared_curvature_cells(config) == []


def test_training_pairs_limit_the_training_cells_only():
    config = _config(pairs=[{"architecture": "lenet5", "dataset": "synthetic"}])
    config["pairs"] = [
        {"architecture": "lenet300100", "dataset": "synthetic"},
        {"architecture": "lenet5", "dataset": "synthetic"},
    ]
    assert trained_pairs(config) == [("lenet5", "synthetic")]
    assert {c.architecture for c in train_cells(config)} == {"lenet5"}
    assert len(train_cells(config)) == 2 * 3 * 2 * 2  # one pair's cells
    assert {c.architecture for c in curvature_cells(config)} == {"lenet300100", "lenet5"}
    config["training"]["pairs"] = None
    assert trained_pairs(config) == [("lenet300100", "synthetic"), ("lenet5", "synthetic")]
    assert len(train_cells(config)) == 2 * 2 * 3 * 2 * 2


def test_batch_limit_is_what_runs_at_once_in_this_process():
    local = {"main_process": True, "nodes": None}
    # A job in a process of its own trains alone (and so does not wait for mates).
    assert batch_limit(64, main_process=False, cores=16, nodes=None, train_jobs=128) == (1, None)
    # Enough job slots: the configured size, silently.
    assert batch_limit(64, **local, cores=148, train_jobs=128) == (64, None)
    assert batch_limit(1, **local, cores=2, train_jobs=None) == (1, None)
    # Jobs sent elsewhere (--jobs/nodes) or no core count: nothing limited here.
    assert batch_limit(64, main_process=True, cores=1, nodes=50, train_jobs=None) == (64, None)
    assert batch_limit(64, **local, cores=None, train_jobs=None) == (64, None)
    # Fewer slots than batch_cells: the slots, with one line naming what limits them.
    limit, warning = batch_limit(64, **local, cores=16, train_jobs=None)
    assert limit == 16 and "batch_cells is 64" in warning and "(--cores 16)" in warning
    assert "\n" not in warning and "--workflow-profile profiles/gpu" in warning
    limit, warning = batch_limit(64, **local, cores=148, train_jobs=8)
    assert limit == 8 and "(resources train_jobs=8)" in warning and "raise train_jobs" in warning
    assert "profiles/gpu" not in warning  # the run already has its pools
