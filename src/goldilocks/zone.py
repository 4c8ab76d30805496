"""The Goldilocks zone boundary (docs/method.md section 6), computed once for every consumer.

Per architecture, dataset, variant and scaling: the contiguous interval of grid scales
around the peak where the seed-mean ``Tr(H)/||H||_F`` is at least ``threshold`` times its
maximum. No zone (NaN bounds) when the maximum is not positive. NaN means (saturated or
overflowing cells) count as below the threshold, so they end the interval. Beside the grid
bounds, the zone's edges interpolated in log scale between the last grid scale inside and
the first outside (:func:`interpolated_edge`), so a zone one grid point wide still has a
width; an edge at the grid's end is marked open (the curve is still above the threshold
there, the true edge lies beyond the grid).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from goldilocks.tables import ZONE_KEYS

KEYS = list(ZONE_KEYS)
COLUMNS = [
    *KEYS,
    "lower",
    "upper",
    "peak_scale",
    "peak_value",
    "threshold",
    "lower_edge",
    "upper_edge",
    "lower_open",
    "upper_open",
    "width_decades",
]
#: Two scales are the same grid value within this in log10: grid values are stored to
#: six significant digits (10^-0.75 as 0.177828), and alpha^-L multiplies that rounding.
LOG_TOL = 1e-5


def interpolated_edge(s_in: float, v_in: float, s_out: float, v_out: float, level: float) -> float:
    """Where the curve crosses ``level`` between a grid scale inside the zone (``v_in >=
    level``) and its neighbour outside (``v_out < level``): linear in ``v`` against
    ``log10(scale)``. A NaN neighbour gives the inside scale (no crossing to place)."""
    if not np.isfinite(v_out):
        return float(s_in)
    t = (v_in - level) / (v_in - v_out)
    return float(10 ** (math.log10(s_in) + t * (math.log10(s_out) - math.log10(s_in))))


def zone_bounds(scales: np.ndarray, values: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Zone of one curve.

    Args:
        scales: grid scales, any order.
        values: seed-mean ``Tr/||H||_F`` at those scales (NaN allowed).
        threshold: fraction of the peak value that still counts as in the zone.

    Returns:
        ``lower``, ``upper`` (grid scales), ``peak_scale``, ``peak_value``,
        ``lower_edge``, ``upper_edge`` (interpolated, :func:`interpolated_edge`; the grid
        bound where the zone reaches the grid's end), ``lower_open``, ``upper_open`` (the
        zone reaches that end of the grid) and ``width_decades`` (``log10(upper_edge /
        lower_edge)``); the bounds and edges are NaN (the flags False) when there is no
        zone, the peak NaN only when every value is NaN.
    """
    order = np.argsort(scales)
    s, v = np.asarray(scales, float)[order], np.asarray(values, float)[order]
    none = {
        "lower": math.nan,
        "upper": math.nan,
        "peak_scale": math.nan,
        "peak_value": math.nan,
        "lower_edge": math.nan,
        "upper_edge": math.nan,
        "lower_open": False,
        "upper_open": False,
        "width_decades": math.nan,
    }
    if len(v) == 0 or np.all(np.isnan(v)):
        return none
    peak = int(np.nanargmax(v))
    result = {**none, "peak_scale": float(s[peak]), "peak_value": float(v[peak])}
    if not v[peak] > 0:
        return result
    level = threshold * v[peak]
    inside = np.nan_to_num(v, nan=-np.inf) >= level
    lo = peak
    while lo > 0 and inside[lo - 1]:
        lo -= 1
    hi = peak
    while hi < len(v) - 1 and inside[hi + 1]:
        hi += 1
    lower_open, upper_open = lo == 0, hi == len(v) - 1
    lower_edge = (
        float(s[lo]) if lower_open else interpolated_edge(s[lo], v[lo], s[lo - 1], v[lo - 1], level)
    )
    upper_edge = (
        float(s[hi]) if upper_open else interpolated_edge(s[hi], v[hi], s[hi + 1], v[hi + 1], level)
    )
    return {
        **result,
        "lower": float(s[lo]),
        "upper": float(s[hi]),
        "lower_edge": lower_edge,
        "upper_edge": upper_edge,
        "lower_open": bool(lower_open),
        "upper_open": bool(upper_open),
        "width_decades": math.log10(upper_edge / lower_edge),
    }


def goldilocks_zone(curvature: pd.DataFrame, threshold: float = 0.5) -> pd.DataFrame:
    """One zone row per (architecture, dataset, variant, scaling) of ``curvature``.

    Columns: the keys, ``lower``, ``upper``, ``peak_scale``, ``peak_value``, ``threshold``
    (so a saved table says how it was made), ``lower_edge``, ``upper_edge``,
    ``lower_open``, ``upper_open`` and ``width_decades`` (see :func:`zone_bounds`).
    """
    rows = []
    for key, group in curvature.groupby(KEYS, sort=True):
        mean = group.groupby("scale")["hessian_trace_ratio"].mean()
        rows.append(
            {
                **dict(zip(KEYS, key, strict=True)),
                **zone_bounds(mean.index.to_numpy(), mean.to_numpy(), threshold),
                "threshold": float(threshold),
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def zone_row(
    zone: pd.DataFrame | None,
    variant: str,
    scaling: str,
    pair: tuple[str, str] | None = None,
) -> tuple[pd.Series | None, str]:
    """The zone row of ``variant``/``scaling`` (of ``pair``, (architecture, dataset), when
    given; else ``zone`` is one pair's), or None and the reason. The one zone look-up of
    the claims and the figures; the row's bounds are NaN when the curve has no zone
    (:func:`bounds`)."""
    if zone is None:
        return None, "no zone table"
    hit = zone[(zone["variant"] == variant) & (zone["scaling"] == scaling)]
    if pair is not None:
        hit = hit[(hit["architecture"] == pair[0]) & (hit["dataset"] == pair[1])]
    if hit.empty:
        return None, f"no zone row for '{variant}' under '{scaling}'"
    return hit.iloc[0], ""


def bounds(row: pd.Series | None) -> tuple[float, float] | None:
    """``(lower, upper)`` of a zone row, or None when there is no row or no zone (NaN)."""
    if row is None:
        return None
    lower, upper = float(row["lower"]), float(row["upper"])
    if not (np.isfinite(lower) and np.isfinite(upper)):
        return None
    return lower, upper


def inside(lower: float, upper: float, scales) -> np.ndarray:
    """Per scale: within ``[lower, upper]`` up to :data:`LOG_TOL` in log10 (NaN: False)."""
    lo, hi = math.log10(lower) - LOG_TOL, math.log10(upper) + LOG_TOL
    return np.array([bool(np.isfinite(s) and lo <= math.log10(s) <= hi) for s in scales], bool)
