"""Aggregation: per-cell Parquet files into the tables of SPEC section 9."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

LAYER_PREFIX = "layer_ratio."
CELL_KEYS = ["architecture", "dataset", "variant", "scaling", "scale", "seed"]


def concat_cells(paths: Sequence[str]) -> pd.DataFrame:
    """All cell files stacked, sorted by their keys (order of ``paths`` is irrelevant)."""
    return _stack([pd.read_parquet(p) for p in paths])


def split_layer_ratios(paths: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Curvature cells without their per-layer columns, and those columns in long format.

    Split per cell before stacking, so a layer that a variant lacks never shows up as a
    NaN ratio, while a genuinely non-finite ratio stays NaN.

    Returns:
        ``(curvature, layer_ratios)``; ``layer_ratios`` has the cell keys, ``layer``
        (parameter tensor name, e.g. ``fc1.weight``) and ``ratio`` = ``E[dW^2]/E[W^2]``.
    """
    cells, layers = [], []
    for path in paths:
        frame = pd.read_parquet(path)
        layer_cols = [c for c in frame.columns if c.startswith(LAYER_PREFIX)]
        cells.append(frame.drop(columns=layer_cols))
        long = frame[CELL_KEYS + layer_cols].melt(
            id_vars=CELL_KEYS, var_name="layer", value_name="ratio"
        )
        long["layer"] = long["layer"].str.removeprefix(LAYER_PREFIX)
        layers.append(long)
    return _stack(cells), _stack(layers, ["layer"])


def _stack(frames: list[pd.DataFrame], extra_keys: Sequence[str] = ()) -> pd.DataFrame:
    if not frames:
        return pd.DataFrame()
    frame = pd.concat(frames, ignore_index=True)
    keys = [k for k in [*CELL_KEYS, "lr_base", "epoch", *extra_keys] if k in frame.columns]
    return frame.sort_values(keys, kind="stable").reset_index(drop=True)
