"""The tables' columns and the row builders of every cell (docs/method.md section 9).

A cell's rows start with its identity columns (:meth:`goldilocks.cells.CurvatureCell.identity`);
the builders here add what each stage measured, in the order the aggregated tables keep.
Per-layer weight-to-gradient ratios are written long (one row per cell and parameter
tensor) directly. :func:`stack` concatenates cell files into a table sorted by the grid
axes, so the order of the inputs never matters.
"""

from __future__ import annotations

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


def final_rows(training: pd.DataFrame) -> pd.DataFrame:
    """The last logged row of every training cell (a diverged cell's divergence row)."""
    return training.sort_values("epoch").groupby(list(TRAIN_KEYS), as_index=False).tail(1)
