"""Row builders and the tables' order: identity columns first, layer ratios long."""

import math

import pandas as pd
import pytest

from goldilocks.cells import CURVATURE_IDENTITY, TRAIN_IDENTITY, CurvatureCell, TrainCell
from goldilocks.tables import (
    curvature_row,
    final_accuracy,
    layer_ratio_rows,
    stack,
    training_rows,
)

CELL = CurvatureCell("lenet300100", "fmnist", "residual", "joint", "10", 1)


def test_curvature_row_columns_in_table_order():
    row = curvature_row(
        CELL, 298_200, {"loss": 2.3, "hessian_trace_ratio": 0.5}, "float32", "cpu", 0.4
    )
    assert list(row.columns) == [
        *CURVATURE_IDENTITY,
        "depth",
        "residual_depth",
        "output_exponent",
        "n_params",
        "loss",
        "hessian_trace_ratio",
        "dtype",
        "device",
        "compute_seconds",
    ]
    assert row.loc[0, "temperature"] == 1e4 and row.loc[0, "depth"] == 4
    assert row.loc[0, "output_exponent"] == 4


def test_layer_ratios_are_long():
    rows = layer_ratio_rows(CELL, {"fc1.weight": 0.1, "block1.weight": math.nan})
    assert list(rows.columns) == [
        "architecture",
        "dataset",
        "variant",
        "scaling",
        "scale",
        "seed",
        "layer",
        "ratio",
    ]
    assert rows["layer"].tolist() == ["fc1.weight", "block1.weight"]
    assert math.isnan(rows["ratio"].iloc[1])


def _history(diverged_at=None):
    return [
        {
            "epoch": e,
            "train_loss": 1.0,
            "train_acc": 0.5,
            "test_loss": 1.0,
            "test_acc": 0.5,
            "diverged": diverged_at is not None,
            "diverged_epoch": diverged_at,
        }
        for e in (0, 2)
    ]


def test_training_rows_and_their_final_row():
    cell = TrainCell("lenet300100", "fmnist", "bias", "temperature", "100", 0, "0.1")
    rows = training_rows(cell, _history(), 3.0)
    assert list(rows.columns[: len(TRAIN_IDENTITY)]) == list(TRAIN_IDENTITY)
    assert rows["lr"].iloc[0] == 0.1 * 100 and rows["diverged_epoch"].dtype == "Int64"
    other = training_rows(
        TrainCell("lenet300100", "fmnist", "bias", "temperature", "100", 0, "1"), _history(2), 1.0
    )
    final = final_accuracy(stack([other, rows]), diverged="nan")
    assert final["epoch"].tolist() == [2, 2] and final["lr_base"].tolist() == [0.1, 1.0]


def test_stack_sorts_by_the_grid_axes_whatever_the_input_order():
    a = curvature_row(CELL, 1, {"loss": 1.0}, "float32", "cpu", 0.1)
    b = curvature_row(
        CurvatureCell("lenet300100", "fmnist", "bias", "joint", "10", 0),
        1,
        {"loss": 2.0},
        "float32",
        "cpu",
        0.1,
    )
    pd.testing.assert_frame_equal(stack([a, b]), stack([b, a]))
    assert stack([a, b])["variant"].tolist() == ["bias", "residual"]
    assert stack([]).empty


def test_final_accuracy_policy_for_a_diverged_cell():
    """One definition, two named policies: NaN (the heatmaps) or the epoch-0 accuracy
    (the claims, figure 7); a cell that did not diverge is the same under both."""
    history = _history()
    history[0]["train_acc"] = 0.1
    history[1].update(train_acc=math.nan, train_loss=math.nan, diverged=True, diverged_epoch=2)
    cell = TrainCell("lenet300100", "fmnist", "bias", "alpha", "1", 0, "0.1")
    rows = stack([training_rows(cell, history, 1.0)])
    nan = final_accuracy(rows, diverged="nan")
    initial = final_accuracy(rows, diverged="initial")
    assert math.isnan(nan["train_acc"].iloc[0]) and initial["train_acc"].iloc[0] == 0.1
    assert initial["test_acc"].iloc[0] == 0.5 and math.isinf(initial["max_loss"].iloc[0])
    fine = stack([training_rows(cell, _history(), 1.0)])
    assert final_accuracy(fine, diverged="nan")["train_acc"].tolist() == [0.5]
    assert final_accuracy(fine, diverged="initial")["train_acc"].tolist() == [0.5]
    with pytest.raises(ValueError, match="diverged must be one of"):
        final_accuracy(rows, diverged="drop")
