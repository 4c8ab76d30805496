"""The claims' statistics on plain arrays: one seed's numbers in, one value out.

Every claim (:mod:`goldilocks.claims`) reads one seed's curves from the tables and calls
one of these; the calibration generators (:mod:`goldilocks.claims_calibration`) call the
same functions on synthetic seeds, so what is calibrated is what the pipeline computes.
Each returns ``(value, at_end)``: ``at_end`` is true when the value is decided by a first
or last grid point (a peak, minimum or spread extreme at the grid's end). NaN inputs are
left out; too few finite points give NaN. numpy only.
"""

from __future__ import annotations

import math

import numpy as np

Value = tuple[float, bool]


def _finite(y) -> np.ndarray:
    y = np.asarray(y, float)
    return y[np.isfinite(y)]


def _at_end(index: int, n: int) -> bool:
    return index == 0 or index == n - 1


def spread(y) -> Value:
    """max - min of the finite values (NaN below two)."""
    f = _finite(y)
    if len(f) < 2:
        return math.nan, False
    hi, lo = int(np.argmax(f)), int(np.argmin(f))
    return float(f[hi] - f[lo]), _at_end(hi, len(f)) or _at_end(lo, len(f))


def departure(small, large) -> Value:
    """max over ``small`` of |value - median(``large``)| (the large-alpha level); at_end:
    the largest departure is at the smallest scale."""
    s, ref = np.asarray(small, float), _finite(large)
    if len(ref) == 0 or not np.isfinite(s).any():
        return math.nan, False
    gaps = np.abs(s - float(np.median(ref)))
    j = int(np.nanargmax(gaps))
    return float(gaps[j]), j == 0


def max_abs_gap(a, b) -> Value:
    """max |a - b| over the positions where both are finite (NaN below two)."""
    d = np.abs(np.asarray(a, float) - np.asarray(b, float))
    ok = np.flatnonzero(np.isfinite(d))
    if len(ok) < 2:
        return math.nan, False
    j = int(np.argmax(d[ok]))
    return float(d[ok][j]), _at_end(j, len(ok))


def mean_gap(a, b) -> Value:
    """mean(a - b) over the positions where both are finite (NaN below two), signed: a
    systematic gap, which seed noise of mean zero does not inflate the way a max of
    absolute gaps does."""
    d = np.asarray(a, float) - np.asarray(b, float)
    d = d[np.isfinite(d)]
    if len(d) < 2:
        return math.nan, False
    return float(d.mean()), False


def median_abs_gap(a, b) -> Value:
    """median |a - b| over the positions where both are finite (NaN below two): one point
    on a cliff does not decide it."""
    d = np.abs(np.asarray(a, float) - np.asarray(b, float))
    d = d[np.isfinite(d)]
    if len(d) < 2:
        return math.nan, False
    return float(np.median(d)), False


def prominence(y) -> Value:
    """min(peak, peak - max(left end, right end)) over the finite values (NaN below
    three): a positive value is a positive peak that stands above both ends of the
    curve, so a plateau or a rise running to the grid's end scores 0 or less. Each end
    is the mean of the two outermost values (less noise), or the outermost value alone
    when the peak is one of the two outermost values."""
    f = _finite(y)
    if len(f) < 3:
        return math.nan, False
    j = int(np.argmax(f))
    peak = float(f[j])
    if 2 <= j <= len(f) - 3:
        ends = max(float(f[:2].mean()), float(f[-2:].mean()))
    else:
        ends = max(float(f[0]), float(f[-1]))
    return min(peak, peak - ends), _at_end(j, len(f))


def minimum(y) -> Value:
    f = _finite(y)
    if len(f) == 0:
        return math.nan, False
    j = int(np.argmin(f))
    return float(f[j]), _at_end(j, len(f))


def maximum(y) -> Value:
    f = _finite(y)
    if len(f) == 0:
        return math.nan, False
    j = int(np.argmax(f))
    return float(f[j]), _at_end(j, len(f))


def peak_ratio(y, reference) -> Value:
    """max(y) / max(reference); NaN when the reference peak is not positive."""
    peak, end = maximum(y)
    base, _ = maximum(reference)
    if not (np.isfinite(base) and base > 0):
        return math.nan, False
    return peak / base, end


def _sides(acc, inside) -> tuple[np.ndarray, np.ndarray]:
    """The finite accuracies inside and outside the zone."""
    acc, inside = np.asarray(acc, float), np.asarray(inside, bool)
    ok = np.isfinite(acc)
    return acc[ok & inside], acc[ok & ~inside]


def inside_minus_outside(acc, inside) -> Value:
    """mean(acc inside) - mean(acc outside) (NaN when either side is empty)."""
    a, b = _sides(acc, inside)
    return (float(a.mean() - b.mean()) if len(a) and len(b) else math.nan), False


def best_inside_minus_outside(acc, inside) -> Value:
    """max(acc inside) - max(acc outside) (NaN when either side is empty)."""
    a, b = _sides(acc, inside)
    return (float(a.max() - b.max()) if len(a) and len(b) else math.nan), False


def rank_correlation(x, y, min_points: int = 3) -> Value:
    """Spearman's rho over the finite pairs (ties averaged); 0 when either side is
    constant; NaN below ``min_points``."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < max(min_points, 2):
        return math.nan, False
    rx, ry = _ranks(x[ok]), _ranks(y[ok])
    if np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return 0.0, False
    return float(np.corrcoef(rx, ry)[0, 1]), False


def _ranks(v: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties given their average rank."""
    order = np.argsort(v, kind="stable")
    _, start, counts = np.unique(v[order], return_index=True, return_counts=True)
    ranks = np.empty(len(v))
    ranks[order] = np.repeat(start + (counts - 1) / 2 + 1, counts)
    return ranks


def slope(x, y) -> Value:
    """Least-squares slope of y against x over the finite pairs (NaN below two)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2 or np.ptp(x[ok]) == 0:
        return math.nan, False
    return float(np.polyfit(x[ok], y[ok], 1)[0]), False


def slope_difference(x, y, x_ref, y_ref) -> Value:
    """slope(x, y) - slope(x_ref, y_ref)."""
    a, _ = slope(x, y)
    b, _ = slope(x_ref, y_ref)
    return a - b, False


def good_fraction(x, acc, rel: float, at: float) -> Value:
    """Fraction of the range of ``x`` (log T) where ``acc``, linear between the finite
    points, is at least ``rel`` x its value at ``x = at`` (log T = 0: T = 1; NaN below two
    points or when ``at`` is outside the range): a continuous share of the range, not a
    count of grid points, against one reference point (a maximum over noisy points
    would sit above the curve's true top)."""
    x, y = np.asarray(x, float), np.asarray(acc, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 2 or np.ptp(x) == 0 or not x.min() <= at <= x.max():
        return math.nan, False
    order = np.argsort(x)
    x, y = x[order], y[order]
    y = y - rel * float(np.interp(at, x, y))  # >= 0: trains well
    covered = 0.0
    for x0, x1, y0, y1 in zip(x[:-1], x[1:], y[:-1], y[1:], strict=True):
        if y0 >= 0 and y1 >= 0:
            covered += x1 - x0
        elif y0 >= 0 or y1 >= 0:  # crosses the level once: the part on the good side
            covered += (x1 - x0) * max(y0, y1) / abs(y1 - y0)
    return covered / float(x[-1] - x[0]), False


def max_deficit(acc, reference) -> Value:
    """max(reference - acc) over the finite pairs (NaN when none)."""
    d = np.asarray(reference, float) - np.asarray(acc, float)
    d = d[np.isfinite(d)]
    if len(d) == 0:
        return math.nan, False
    return float(d.max()), False


def fraction_difference(flags, reference_flags) -> Value:
    """mean(flags) - mean(reference_flags) (NaN when either is empty)."""
    a, b = np.asarray(flags, float), np.asarray(reference_flags, float)
    if len(a) == 0 or len(b) == 0:
        return math.nan, False
    return float(a.mean() - b.mean()), False


#: The largest multiple of ``flat`` an input-independent curve's effective spread takes.
GATE_CAP = 10.0


def effective_spread(y, retained, flat: float, share_min: float) -> Value:
    """Recoverable = flat and input-dependent, as one value in spread units: max - min of
    ``y`` (:func:`spread`), or, where the least ``retained`` input-dependent share (the
    logits' share of variance across inputs relative to alpha = 1) is below
    ``share_min``, ``flat * share_min / retained`` (at most ``GATE_CAP * flat``) when
    that is larger: a curve over logits that ignore the input counts as above ``flat``
    by the factor its input dependence falls short (NaN below two curve points or
    without a share). The cap keeps the value plottable (a bias makes the share 1e-30
    and less); any value above ``flat`` decides the same."""
    value, end = spread(y)
    r = _finite(retained)
    if not np.isfinite(value) or len(r) == 0:
        return math.nan, False
    least = max(float(r.min()), 1e-300)
    if least >= share_min:
        return value, end
    gated = min(flat * share_min / least, GATE_CAP * flat)
    return (gated, False) if gated > value else (value, end)


def shift_difference(alpha_v, alpha_ref, temperature_v, temperature_ref) -> Value:
    """|alpha_v - alpha_ref| - |temperature_v - temperature_ref|: how much further a
    variant's zone sits from the reference's under alpha than under T (both in decades
    of the equivalent temperature; NaN where one is missing), to 1e-4 decades."""
    values = np.array([alpha_v, alpha_ref, temperature_v, temperature_ref], float)
    if not np.isfinite(values).all():
        return math.nan, False
    # Rounded to 1e-4 decades: the grids store six significant digits (log10 errors of
    # about 1e-6), so equal distances on the grid stay equal (0, not +-1e-7).
    value = abs(values[0] - values[1]) - abs(values[2] - values[3])
    return float(np.round(value, 4)) + 0.0, False
