"""Aggregation: per-cell files into per-pair tables, and those into the tables under
``results/`` (docs/method.md section 9). Torch-free; the workflow's aggregate and figure
jobs and any notebook use the same two functions."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from goldilocks.io import read_cell_table, read_parquet
from goldilocks.tables import stack


def cell_table(paths: Sequence[str], kind: str) -> pd.DataFrame:
    """Cell files of ``kind`` (``curvature``, ``layer_ratios``, ``training``) stacked and
    sorted by their keys; a file of another format raises :class:`goldilocks.io.StaleFile`
    naming it (the order of ``paths`` is irrelevant)."""
    return stack([read_cell_table(p, kind) for p in paths])


def as_scaling(frame: pd.DataFrame, scaling: str) -> pd.DataFrame:
    """``frame`` with every row's ``scaling`` set to ``scaling``: a part's rows taken from
    cells of another scaling with the same alpha and T (``joint`` cells in the
    ``joint_residual`` part of a variant with m = k; docs/method.md section 2.2)."""
    if "scaling" not in frame or frame.empty or (frame["scaling"] == scaling).all():
        return frame
    return stack([frame.assign(scaling=scaling)])


def concat_tables(paths: Sequence[str]) -> pd.DataFrame:
    """Aggregated tables (per pair and scaling) stacked into one, sorted by their keys."""
    return stack([read_parquet(p) for p in paths])
