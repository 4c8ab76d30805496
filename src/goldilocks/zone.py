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
    """Per scale: within ``[lower, upper]`` up to :data:`LOG_TOL` in log10 (NaN or not
    positive: False); ``lower`` 0 or ``upper`` ``inf`` leaves that side unbounded."""
    lo = -math.inf if lower == 0 else math.log10(lower) - LOG_TOL
    hi = math.inf if math.isinf(upper) else math.log10(upper) + LOG_TOL
    return np.array(
        [bool(np.isfinite(s) and s > 0 and lo <= math.log10(s) <= hi) for s in scales], bool
    )


def edges(row: pd.Series | None, open_unbounded: bool = False) -> tuple[float, float] | None:
    """``(lower_edge, upper_edge)`` of a zone row: the edges interpolated in log scale
    (:func:`zone_bounds`), or None when there is no row or no zone. A zone table written
    before the edges existed gives its grid bounds. With ``open_unbounded`` an edge at the
    grid's end (the curve still above the threshold there) is 0 or ``inf``: the zone's
    true edge lies beyond the grid, so every scale past it counts as inside."""
    grid = bounds(row)
    if grid is None:
        return None
    if "lower_edge" not in row or "upper_edge" not in row:
        return grid
    lower, upper = float(row["lower_edge"]), float(row["upper_edge"])
    if not (np.isfinite(lower) and np.isfinite(upper)):
        return grid
    if open_unbounded:
        lower = 0.0 if bool(row.get("lower_open", False)) else lower
        upper = math.inf if bool(row.get("upper_open", False)) else upper
    return lower, upper


def contains(row: pd.Series | None, scales) -> np.ndarray | None:
    """Per scale: inside the zone row's interpolated edges (:func:`edges`, an open edge
    unbounded; up to :data:`LOG_TOL` in log10), or None when there is no zone. The one
    membership test of the claims and figures: a trained scale between two curvature
    grid points is judged by where the curve crosses the threshold, not by its nearest
    grid point."""
    span = edges(row, open_unbounded=True)
    return None if span is None else inside(*span, scales)


#: Two log10 gaps are the same grid step within this (scales are canonical to six digits).
STEP_TOL = 1e-3


def equal_density(scales, zone_mask) -> np.ndarray:
    """Which of ``scales`` an inside-against-outside comparison uses: one stretch of the
    grid at one density (docs/claims.md, "Inside against outside the zone").

    A training grid refined around T = 1 (``refine`` in a scale grid, docs/method.md
    section 2.4) samples the zone more densely than the far scales; a maximum or mean
    over more points inside would favour the zone for the sampling alone. The comparison
    therefore keeps one *run*: consecutive scales (ascending in log10) with equal steps,
    at least 3 of them. Among the runs holding scales both inside and outside the zone
    (``zone_mask``) it takes the finest step, then the longest run; failing that, the
    finest run holding zone scales; a grid with no run of 3 is kept whole. A uniform
    grid is one run: every scale is kept.

    Returns:
        A boolean mask over ``scales`` (their order).
    """
    logs = np.log10(np.asarray(list(scales), float))
    mask = np.asarray(zone_mask, bool)
    n = len(logs)
    order = np.argsort(logs)
    gaps = np.diff(logs[order])
    runs, start = [], 0  # (first, last) positions in ``order`` of maximal equal-step runs
    for i in range(1, len(gaps) + 1):
        if i == len(gaps) or abs(gaps[i] - gaps[start]) > STEP_TOL * max(1.0, gaps[start]):
            if i - start >= 2:
                runs.append((start, i))
            start = i
    if not runs:
        return np.ones(n, bool)

    def rank(run):
        members = mask[order[run[0] : run[1] + 1]]
        both = bool(members.any() and not members.all())
        return (both, bool(members.any()), -gaps[run[0]], run[1] - run[0])

    first, last = max(runs, key=rank)
    keep = np.zeros(n, bool)
    keep[order[first : last + 1]] = True
    return keep


def with_trained(zone: pd.DataFrame, training: pd.DataFrame | None) -> pd.DataFrame:
    """``zone`` with ``trained_scales`` and ``trained_inside``: per row, how many distinct
    scales the training table trained for that architecture, dataset, variant and scaling,
    and how many of them lie inside the zone's interpolated edges (:func:`contains`, the
    claims' test); both missing (``<NA>``) for a curve that is not trained, and
    ``trained_inside`` missing too where there is no zone. How well a training grid
    resolves each zone (docs/method.md section 2.4), readable without rerunning a cell."""
    out = zone.copy()
    total = pd.Series(pd.NA, index=out.index, dtype="Int64")
    inside_ = pd.Series(pd.NA, index=out.index, dtype="Int64")
    if training is not None and not training.empty:
        trained = training.groupby(KEYS)["scale"].unique()
        for i, row in out.iterrows():
            key = tuple(row[k] for k in KEYS)
            if key not in trained.index:
                continue
            scales = trained.loc[key]
            total[i] = len(scales)
            mask = contains(row, scales)
            if mask is not None:
                inside_[i] = int(mask.sum())
    out["trained_scales"], out["trained_inside"] = total, inside_
    return out
