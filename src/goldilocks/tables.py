"""The tables' columns and the row builders of every cell (docs/method.md section 9).

A cell's rows start with its identity columns (:meth:`goldilocks.cells.CurvatureCell.identity`);
the builders here add what each stage measured, in the order the aggregated tables keep.
Per-layer weight-to-gradient ratios are written long (one row per cell and parameter
tensor) directly. :func:`stack` concatenates cell files into a table sorted by the grid
axes, so the order of the inputs never matters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd

from goldilocks.cells import CURVATURE_KEYS, TRAIN_KEYS, CurvatureCell, TrainCell

#: Sort order of every table: the grid axes, then what a row adds to them.
SORT_KEYS: tuple[str, ...] = (*CURVATURE_KEYS, "lr_base", "epoch", "layer")
#: Columns of a zone row's identity: one zone per curve.
ZONE_KEYS: tuple[str, ...] = ("architecture", "dataset", "variant", "scaling")


def curvature_row(
    cell: CurvatureCell,
    n_params: int,
    metrics: Mapping[str, float | bool],
    dtype: str,
    device: str,
    seconds: float,
) -> pd.DataFrame:
    """One curvature cell's row: identity, ``depth``, ``residual_depth``,
    ``output_exponent`` (k), ``n_params``,
    the metrics of :func:`goldilocks.curvature.measure`, ``dtype``, ``device`` and
    ``compute_seconds``."""
    d = cell.description
    record = {
        **cell.identity(),
        "depth": d.depth,
        "residual_depth": d.residual_depth,
        "output_exponent": d.output_exponent,
        "n_params": n_params,
        **metrics,
        "dtype": dtype,
        "device": device,
        "compute_seconds": seconds,
    }
    return pd.DataFrame([record])


def layer_ratio_rows(cell: CurvatureCell, ratios: Mapping[str, float]) -> pd.DataFrame:
    """One row per parameter tensor: the cell's axes, ``layer`` and ``ratio``
    (``E[dW^2] / E[W^2]``, Defazio and Bottou)."""
    identity = cell.identity()
    axes = {k: identity[k] for k in CURVATURE_KEYS}
    return pd.DataFrame(
        [{**axes, "layer": layer, "ratio": ratio} for layer, ratio in ratios.items()]
    )


def training_rows(cell: TrainCell, history: Sequence[dict], seconds: float) -> pd.DataFrame:
    """One training cell's rows, one per logged epoch: identity (with ``lr_base`` and
    ``lr``), the history columns of :func:`goldilocks.training.train` and
    ``compute_seconds``."""
    frame = pd.DataFrame(list(history))
    for i, (k, v) in enumerate(cell.identity().items()):
        frame.insert(i, k, v)
    frame["diverged_epoch"] = frame["diverged_epoch"].astype("Int64")
    frame["compute_seconds"] = seconds
    return frame


def stack(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Frames concatenated and sorted by :data:`SORT_KEYS` (those present)."""
    if not frames:
        return pd.DataFrame()
    frame = pd.concat(frames, ignore_index=True)
    keys = [k for k in SORT_KEYS if k in frame.columns]
    return frame.sort_values(keys, kind="stable").reset_index(drop=True)


#: What a diverged cell's final accuracy is (:func:`final_accuracy`): ``"nan"``, the NaN of
#: its divergence row (the heatmaps draw it grey); ``"initial"``, its epoch-0 accuracy
#: (what training left it with: nothing gained; the claims and figure 7).
DIVERGED_POLICIES = ("nan", "initial")


def final_accuracy(training: pd.DataFrame, *, diverged: str) -> pd.DataFrame:
    """One row per training cell: its last logged row (the one definition of a cell's
    *final accuracy*, docs/method.md section 6).

    Args:
        training: ``results/training.parquet`` rows (every logged epoch).
        diverged: the policy for a diverged cell's ``train_acc``/``test_acc``, one of
            :data:`DIVERGED_POLICIES`. ``"nan"`` returns the last rows as they are (a
            diverged cell's divergence row). ``"initial"`` keeps a diverged cell's
            epoch-0 accuracies, adds a ``diverged`` column (False) where the table has
            none, and adds ``initial_loss`` (epoch-0 train loss) and ``max_loss``
            (largest logged train loss after epoch 0; inf when the cell diverged) when
            the table has ``train_loss``.

    Raises:
        ValueError: an unknown ``diverged`` policy.
    """
    if diverged not in DIVERGED_POLICIES:
        raise ValueError(f"diverged must be one of {DIVERGED_POLICIES}, not {diverged!r}")
    if diverged == "nan":
        frame = training.sort_values("epoch")
        return frame.groupby(list(TRAIN_KEYS), as_index=False).tail(1)
    frame = training.sort_values("epoch", kind="stable")
    keys = [k for k in TRAIN_KEYS if k in frame.columns]
    last = frame.groupby(keys, as_index=False, dropna=False).tail(1).set_index(keys)
    start = frame[frame["epoch"] == 0].groupby(keys, dropna=False).head(1).set_index(keys)
    acc = [c for c in ("train_acc", "test_acc") if c in frame.columns]
    gone = last["diverged"].fillna(False).astype(bool) if "diverged" in last else None
    out = last.copy()
    if gone is None:
        out["diverged"] = False
        gone = out["diverged"]
    for column in acc:
        initial = start[column].reindex(out.index)
        out[column] = out[column].where(~gone, initial)
    if "train_loss" in frame.columns:
        out["initial_loss"] = start["train_loss"].reindex(out.index)
        later = frame[frame["epoch"] > 0].groupby(keys, dropna=False)["train_loss"].max()
        later = later.reindex(out.index)
        out["max_loss"] = later.where(~gone, math.inf)
    return out.reset_index()
