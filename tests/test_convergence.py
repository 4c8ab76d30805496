"""Convergence of training cells (docs/method.md section 5.8), calibrated on synthetic
loss curves logged as training.log_convergence logs them."""

import math

import numpy as np
import pandas as pd
import pytest

from goldilocks.convergence import DEFAULTS, cell_convergence, convergence_table
from goldilocks.training import is_logged

EPOCHS = 1000
DENSE = np.array([e for e in range(EPOCHS + 1) if is_logged(e, 100, EPOCHS, dense=True)])
SPARSE = np.array([e for e in range(EPOCHS + 1) if is_logged(e, 200, EPOCHS)])
LN10 = math.log(10)


def status(curve, epochs=DENSE, diverged=False) -> dict:
    return cell_convergence(epochs, curve(epochs.astype(float)), diverged, **DEFAULTS)


def test_dense_schedule():
    assert list(DENSE[:12]) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 100]
    assert set(range(900, 1001)) <= set(DENSE) and 899 not in DENSE
    assert list(SPARSE) == list(range(0, 1001, 200))
    small = [e for e in range(7) if is_logged(e, 3, 6, dense=True)]
    assert small == list(range(7))  # epochs 1..min(10, epochs): every one


def test_exponential_decay_to_a_floor_converges():
    row = status(lambda e: 0.05 + (LN10 - 0.05) * np.exp(-e / 50))
    assert row["status"] == "converged" and row["converged"] and row["progressed"]
    assert row["window_points"] == 101


def test_linear_creep_from_ln10_is_stalled():
    row = status(lambda e: LN10 - 1e-4 * e)  # large T: barely moving
    assert row["status"] == "stalled" and not row["converged"] and not row["progressed"]
    flat = status(lambda e: LN10 + 0 * e)  # flat at its initial value: spread 0
    assert flat["status"] == "stalled" and not flat["converged"]


def test_oscillating_window_is_not_converged():
    row = status(lambda e: 0.3 + 0.5 * np.exp(-e / 50) + 0.1 * (e >= 900) * np.sin(e))
    assert row["status"] == "progressing" and not row["converged"]


def test_still_falling_fast_at_the_end_is_progressing():
    row = status(lambda e: LN10 * np.exp(-e / 1000))  # fell 63%, 6% of it in the window
    assert row["progressed"] and row["status"] == "progressing" and not row["converged"]


def test_sparse_logging_is_unknown_with_its_reason():
    row = status(lambda e: 0.05 + (LN10 - 0.05) * np.exp(-e / 50), epochs=SPARSE)
    assert row["status"] == "unknown" and not row["converged"]
    assert "log_convergence" in row["reason"]


def test_diverged_and_nonfinite():
    assert status(lambda e: LN10 - e / 1e4, diverged=True)["status"] == "diverged"
    row = status(lambda e: np.where(e == 0, np.nan, 0.1))
    assert row["status"] == "unknown" and not row["converged"]


def _table(curves: dict) -> pd.DataFrame:
    rows = []
    for (scale, seed), curve in curves.items():
        for e in DENSE:
            rows.append(
                dict(architecture="lenet300100", dataset="fmnist", variant="bias",
                     scaling="temperature", scale=scale, seed=seed, lr_base=0.1,
                     epoch=int(e), train_loss=float(curve(e)), diverged=False)
            )  # fmt: skip
    return pd.DataFrame(rows)


def test_table_one_row_per_cell():
    table = _table({(1.0, 0): lambda e: 0.05 + 2.25 * math.exp(-e / 50),
                    (1e6, 0): lambda e: LN10 - 1e-5 * e,
                    (1.0, 1): lambda e: LN10 * math.exp(-e / 1000)})  # fmt: skip
    out = convergence_table(table)
    assert len(out) == 3 and list(out["epochs"]) == [1000] * 3
    by = out.set_index(["scale", "seed"])["status"]
    assert by[(1.0, 0)] == "converged" and by[(1e6, 0)] == "stalled"
    assert by[(1.0, 1)] == "progressing"


def test_bad_input_one_line():
    with pytest.raises(ValueError, match="train_loss"):
        convergence_table(pd.DataFrame({"epoch": [0]}).assign(
            architecture="a", dataset="d", variant="v", scaling="s", scale=1.0, seed=0,
            lr_base=0.1))  # fmt: skip
    with pytest.raises(ValueError, match=r"convergence\.progress_frac"):
        convergence_table(_table({}), progress_frac=0)
