"""The curvature claims (paper section 3.1, appendix E), each measured on one seed.

Each function takes one seed's tables (:meth:`goldilocks.claim_stats.PairTables.for_seed`:
its "seed-mean" curves are that seed's curves), a variant, a scaling and the thresholds,
and returns :data:`Measured`: the value, the statistic in words, and whether a grid end
point decides it. The comparator, threshold and decision rule are the claim's spec in
:mod:`goldilocks.claims`; the numbers come from :mod:`goldilocks.claim_kernels`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from goldilocks import claim_kernels as kernel
from goldilocks.claim_stats import (
    PairTables,
    at_least,
    at_most,
    fmt,
    need,
    require,
    value_at,
)
from goldilocks.zone import edges

#: ``(value, statistic in words, decided by a grid end point)``.
Measured = tuple[float, str, bool]


def scale_range(scales) -> str:
    scales = np.asarray(list(scales), float)
    if len(scales) == 0:
        return "none"
    return f"{scales.min():.3g}..{scales.max():.3g}"


def regime(curve: pd.Series, th: dict) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the large (alpha >= regime_alpha) and small (<= 1/regime_alpha) scales."""
    scales = curve.index.to_numpy(float)
    r = th["regime_alpha"]
    return at_least(scales, r), at_most(scales, 1 / r)


def _spread_of(curve: pd.Series, mask: np.ndarray, scales: str) -> tuple[float, bool, int]:
    values = curve.to_numpy(float)[mask]
    n = int(np.isfinite(values).sum())
    require(n >= 2, f"{n} finite {scales}")
    value, end = kernel.spread(values)
    return value, end, len(values) - n


def homogeneous_joint_flat(pair: PairTables, variant, scaling, th) -> Measured:
    """Homogeneous, joint: max - min of the curve over all scales (an exact identity)."""
    curve = need(pair.curve(variant, scaling))
    spread, end, nan = _spread_of(curve, np.ones(len(curve), bool), "joint scale(s)")
    stat = (
        f"max-min of Tr(H)/‖H‖_F over the joint scales (alpha {scale_range(curve.index)}; "
        f"{nan} NaN scale(s) left out); flat if <= threshold"
    )
    return spread, stat, end


def matched(
    pair: PairTables,
    variant: str,
    curve_of: Callable[[str, str], tuple[pd.Series | None, str]],
    below: float | None = None,
    exact_only: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """The alpha curve and the temperature curve at T = alpha^-k, at the alphas (at most
    ``below`` when given) where both are finite; the T curve read with
    :func:`goldilocks.claim_stats.value_at` (exact on a shared grid value, else linear in
    log T; ``exact_only``: shared grid values only).

    Returns:
        ``(alphas, alpha values, T values, exact count, k)``.
    """
    a = need(curve_of(variant, "alpha"))
    temp = need(curve_of(variant, "temperature"))
    k = pair.exponent(variant)
    require(k is not None, f"k of '{variant}' unknown (no output_exponent or depth column)")
    if below is not None:
        a = a[at_most(a.index, below)]
    alphas, left, right, exact = [], [], [], 0
    for alpha, value in a.items():
        at_t, is_exact = value_at(temp, float(alpha) ** -k)
        if np.isfinite(value) and np.isfinite(at_t) and (is_exact or not exact_only):
            alphas.append(float(alpha))
            left.append(float(value))
            right.append(at_t)
            exact += is_exact
    where = f" <= {below:g}" if below is not None else ""
    on = " on the T grid" if exact_only else ""
    require(
        len(alphas) >= 2, f"{len(alphas)} alpha(s){where} with a finite T = alpha^-{k} value{on}"
    )
    return np.array(alphas), np.array(left), np.array(right), exact, k


def homogeneous_alpha_temperature_coincide(pair: PairTables, variant, scaling, th) -> Measured:
    """Homogeneous: max |c_alpha(alpha) - c_T(alpha^-L)| (an exact identity: only the
    alphas whose T is a grid value of the T curve; interpolation has errors of its own)."""
    alphas, a, t, _, k = matched(pair, variant, pair.curve, exact_only=True)
    gap, end = kernel.max_abs_gap(a, t)
    stat = (
        f"max over {len(alphas)} alphas whose T = alpha^-{k} is on the T grid of "
        f"|Tr/‖H‖_F(alpha) - Tr/‖H‖_F(T)|; coincide if <= threshold"
    )
    return gap, stat, end


def inhomogeneous_alpha_temperature_differ(pair: PairTables, variant, scaling, th) -> Measured:
    """Inhomogeneous variants: mean over small alphas of c_alpha(alpha) - c_T(alpha^-k)
    (signed; the comparator asks for its magnitude and the seeds' agreement on its sign)."""
    bound = 1 / th["regime_alpha"]
    alphas, a, t, exact, k = matched(pair, variant, pair.curve, below=bound)
    gap, end = kernel.mean_gap(a, t)
    stat = (
        f"mean over {len(alphas)} alphas <= {bound:g} ({scale_range(alphas)}) of "
        f"Tr/‖H‖_F(alpha) - Tr/‖H‖_F(T = alpha^-{k}) ({exact} on shared grid values); "
        "differ if its magnitude > threshold with the sign of the seeds' median"
    )
    return gap, stat, end


def zone_appears(pair: PairTables, variant, scaling, th) -> Measured:
    """Every variant, alpha and T: min(peak, peak - max(first, last)) of the curve."""
    curve = need(pair.curve(variant, scaling))
    finite = curve[np.isfinite(curve.to_numpy(float))]
    require(len(finite) >= 3, f"{len(finite)} finite scale(s)")
    value, end = kernel.prominence(finite.to_numpy(float))
    stat = (
        f"min(peak, peak - max(first, last)) of Tr(H)/‖H‖_F over {len(finite)} finite "
        f"scales ({scale_range(finite.index)}): peak {fmt(float(finite.max()))} at "
        f"{fmt(float(finite.idxmax()))}, ends {fmt(float(finite.iloc[0]))} and "
        f"{fmt(float(finite.iloc[-1]))}; a positive peak above both ends if > threshold"
    )
    return value, stat, end


def joint_flat_large_alpha(pair: PairTables, variant, scaling, th) -> Measured:
    """Inhomogeneous variants, joint: spread of the curve over alpha >= regime_alpha."""
    curve = need(pair.curve(variant, scaling))
    large, _ = regime(curve, th)
    r = th["regime_alpha"]
    spread, end, nan = _spread_of(curve, large, f"scale(s) with alpha >= {r:g}")
    stat = (
        f"max-min of Tr(H)/‖H‖_F over the joint scales alpha >= {r:g} "
        f"({scale_range(curve.index[large])}; {nan} NaN left out); flat if <= threshold"
    )
    return spread, stat, end


def joint_breaks_small_alpha(pair: PairTables, variant, scaling, th) -> Measured:
    """Inhomogeneous variants, joint: the small-alpha curve departs from its large-alpha
    level (the median over alpha >= regime_alpha)."""
    curve = need(pair.curve(variant, scaling))
    large, small = regime(curve, th)
    values = curve.to_numpy(float)
    r = th["regime_alpha"]
    require(np.isfinite(values[large]).any(), f"no finite scale with alpha >= {r:g}")
    require(np.isfinite(values[small]).any(), f"no finite scale with alpha <= {1 / r:g}")
    value, end = kernel.departure(values[small], values[large])
    stat = (
        f"max over the joint scales alpha <= {1 / r:g} of |Tr/‖H‖_F - its large-alpha "
        f"level {fmt(float(np.nanmedian(values[large])))}| (median over alpha >= {r:g}); "
        "breaks if > threshold"
    )
    return value, stat, end


def _retained_shares(pair: PairTables, variant: str, bound: float) -> pd.Series:
    """The seed's retained input-dependent share (``input_share_rel``) at the grid alphas
    <= ``bound`` of the small-alpha side table."""
    require(pair.small_alpha is not None, "no small_alpha table")
    sub = pair.small_alpha
    sub = sub[(sub["variant"] == variant) & ~sub["window"].astype(bool)]
    require(not sub.empty, f"variant '{variant}' not in the small_alpha table")
    shares = sub.groupby("alpha")["input_share_rel"].mean().sort_index().astype(float)
    shares = shares[at_most(shares.index, bound)]
    require(np.isfinite(shares.to_numpy(float)).any(), f"no input share at alpha <= {bound:g}")
    return shares


def small_alpha_recoverable(pair: PairTables, variant, scaling, th) -> Measured:
    """joint_residual (T = alpha^m): recoverable = flat and input-dependent over alpha <=
    1/regime_alpha, as one value (:func:`goldilocks.claim_kernels.effective_spread`)."""
    curve = need(pair.curve(variant, scaling))
    bound = 1 / th["regime_alpha"]
    small = regime(curve, th)[1]
    spread, _, nan = _spread_of(curve, small, f"scale(s) with alpha <= {bound:g}")
    shares = _retained_shares(pair, variant, bound)
    value, end = kernel.effective_spread(
        curve.to_numpy(float)[small],
        shares.to_numpy(float),
        th["flat_spread"],
        th["input_share_min"],
    )
    contrast = ""
    joint, _ = pair.curve(variant, "joint")
    if joint is not None:
        j_spread, _ = kernel.spread(joint.to_numpy(float)[regime(joint, th)[1]])
        contrast = f"; under joint (T = alpha^k) the same spread is {fmt(j_spread)}"
    stat = (
        f"max-min of Tr(H)/‖H‖_F over the joint_residual (T = alpha^m) scales alpha <= "
        f"{bound:g}: {fmt(spread)} ({nan} NaN left out){contrast}; least input-dependent "
        f"share there relative to alpha = 1: {fmt(float(np.nanmin(shares)))} (below "
        "input_share_min the value is flat_spread x input_share_min / share, at most 10 x "
        "flat_spread); recoverable if <= threshold"
    )
    return value, stat, end


def _zone_centre(pair: PairTables, variant: str, scaling: str) -> float:
    """The seed's zone centre in decades of the equivalent temperature: log10 of the
    geometric mean of its interpolated edges (:func:`goldilocks.zone.edges`) under T;
    under alpha, -k times that of alpha (the logits scale as alpha^k, as T = alpha^-k
    would)."""
    span = edges(need(pair.zone_row(variant, scaling)))
    require(span is not None, f"no zone for '{variant}' under {scaling}")
    lower, upper = span
    centre = (np.log10(lower) + np.log10(upper)) / 2
    if scaling == "temperature":
        return float(centre)
    k = pair.exponent(variant)
    require(k is not None, f"no output exponent for '{variant}'")
    return float(-k * centre)


def temperature_probe_more_robust(pair: PairTables, variant, scaling, th) -> Measured:
    """Inhomogeneous variants: how much further the zone centre sits from the
    homogeneous one under alpha (mapped to T = alpha^-k) than under T, in decades."""
    a_v, a_h = _zone_centre(pair, variant, "alpha"), _zone_centre(pair, "homogeneous", "alpha")
    t_v = _zone_centre(pair, variant, "temperature")
    t_h = _zone_centre(pair, "homogeneous", "temperature")
    value, end = kernel.shift_difference(a_v, a_h, t_v, t_h)
    stat = (
        f"zone centre's distance from the homogeneous zone's, in decades of T: under alpha "
        f"(T = alpha^-k) {fmt(abs(a_v - a_h))}, under T {fmt(abs(t_v - t_h))}; alpha minus "
        "T; temperature the more robust probe if > threshold"
    )
    return value, stat, end


def layernorm_peak_lower(pair: PairTables, variant, scaling, th) -> Measured:
    """LayerNorm variants, alpha and T: peak / homogeneous peak under the same scaling."""
    curve = need(pair.curve(variant, scaling))
    base = need(pair.curve("homogeneous", scaling))
    ratio, end = kernel.peak_ratio(curve.to_numpy(float), base.to_numpy(float))
    peak, ref = kernel.maximum(curve)[0], kernel.maximum(base)[0]
    require(np.isfinite(ratio), f"homogeneous peak {fmt(ref)} under {scaling} is not positive")
    stat = (
        f"peak Tr(H)/‖H‖_F {fmt(peak)} divided by the homogeneous peak {fmt(ref)}; "
        "much lower if < threshold"
    )
    return ratio, stat, end


def layernorm_goes_negative(pair: PairTables, variant, scaling, th) -> Measured:
    """LayerNorm variants, each curvature scaling: min of the curve."""
    curve = need(pair.curve(variant, scaling))
    finite = curve[np.isfinite(curve.to_numpy(float))]
    require(not finite.empty, "no finite scale")
    low, end = kernel.minimum(finite.to_numpy(float))
    stat = (
        f"min of Tr(H)/‖H‖_F over {len(finite)} finite scales "
        f"(at {fmt(float(finite.idxmin()))}); negative if < threshold"
    )
    return low, stat, end


def _kl_part(pair: PairTables, variant: str, bound: float, small: bool) -> pd.Series:
    """Relative logit deviation at the finite alphas <= ``bound`` (``small``) or >=."""
    require(pair.kl is not None, "no kl_layernorm table")
    sub = pair.kl[pair.kl["variant"] == variant]
    require(not sub.empty, f"variant '{variant}' not in the kl_layernorm table")
    curve = sub.groupby("alpha")["logit_rel_error"].mean().sort_index().astype(float)
    side, sign = (at_most, "<=") if small else (at_least, ">=")
    part = curve[side(curve.index, bound)]
    part = part[np.isfinite(part.to_numpy(float))]
    require(not part.empty, f"no finite alpha {sign} {bound:g}")
    return part


def layernorm_linear_output_holds(pair: PairTables, variant, scaling, th) -> Measured:
    """LayerNorm variants: max relative logit deviation at alpha >= 1/regime_alpha."""
    bound = 1 / th["regime_alpha"]
    part = _kl_part(pair, variant, bound, small=False)
    worst, end = kernel.maximum(part.to_numpy(float))
    stat = (
        f"max over {len(part)} alphas >= {bound:g} ({scale_range(part.index)}) of "
        "‖f_{αθ} - α f_θ‖_F / ‖α f_θ‖_F; holds if <= threshold"
    )
    return worst, stat, end


def layernorm_linear_output_breaks_small_alpha(pair: PairTables, variant, scaling, th):
    """LayerNorm variants: max relative logit deviation at alpha <= 1/regime_alpha."""
    bound = 1 / th["regime_alpha"]
    part = _kl_part(pair, variant, bound, small=True)
    worst, end = kernel.maximum(part.to_numpy(float))
    stat = (
        f"max over {len(part)} alphas <= {bound:g} ({scale_range(part.index)}) of the "
        "relative logit deviation; breaks if > threshold"
    )
    return worst, stat, end
