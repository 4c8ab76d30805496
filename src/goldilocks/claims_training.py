"""The training claims (paper section 3.2, appendices H and I), each measured on one seed.

As :mod:`goldilocks.claims_curvature`: each function takes one seed's tables (training
and, where it needs them, curvature of the same seed: one initialisation), a variant, a
scaling and the thresholds, and returns ``(value, statistic in words, at_end)``. A
*best accuracy* is the maximum over eta0 of a cell's final train accuracy
(:func:`goldilocks.claim_stats.final_accuracy`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from goldilocks import claim_kernels as kernel
from goldilocks.claim_stats import (
    LOG_TOL,
    PairTables,
    at_most,
    fmt,
    log10,
    nearest_grid,
    need,
    require,
    value_at,
)
from goldilocks.claims_curvature import Measured, scale_range
from goldilocks.zone import edges, equal_density


def _zone_split(pair: PairTables, variant: str, scaling: str, column: str = "train_acc"):
    """Trained scales and best accuracies (of ``column``) with finite values, at one grid
    density (:func:`goldilocks.zone.equal_density`: the refined stretch of a refined
    grid), and which lie in the zone."""
    best = need(pair.best(variant, scaling, column))
    best = best[np.isfinite(best["mean"])]
    inside = need(pair.in_zone(variant, scaling, best["scale"]))
    keep = equal_density(best["scale"], inside)
    best, inside = best[keep].reset_index(drop=True), inside[keep]
    n_in, n_out = int(inside.sum()), int((~inside).sum())
    require(n_in > 0 and n_out > 0, f"{n_in} trained scale(s) inside the zone and {n_out} outside")
    pair.check_settled(variant, scaling, best["scale"], column)
    return best, inside


#: The accuracy a training claim reads, in words.
_ACCURACY = {"train_acc": "train accuracy", "test_acc": "test accuracy"}


def zone_aligned_with_training(
    pair: PairTables, variant, scaling, th, column: str = "train_acc"
) -> Measured:
    """Bias, residual; T and alpha: mean best accuracy inside minus outside the zone."""
    best, inside = _zone_split(pair, variant, scaling, column)
    diff, end = kernel.inside_minus_outside(best["mean"], inside)
    stat = (
        f"mean best {_ACCURACY[column]} over the {int(inside.sum())} trained scale(s) in "
        f"the seed's zone minus over the {int((~inside).sum())} outside; aligned if > threshold"
    )
    return diff, stat, end


def best_training_in_zone(
    pair: PairTables, variant, scaling, th, column: str = "train_acc"
) -> Measured:
    """Bias, residual; T and alpha: highest best accuracy inside minus highest outside."""
    best, inside = _zone_split(pair, variant, scaling, column)
    diff, end = kernel.best_inside_minus_outside(best["mean"], inside)
    top = best.loc[best["mean"].idxmax()]
    stat = (
        f"highest best {_ACCURACY[column]} over the {int(inside.sum())} trained scale(s) "
        f"in the seed's zone minus the highest over the {int((~inside).sum())} outside (top "
        f"{fmt(top['mean'])} at {fmt(top['scale'])}); best in the zone if >= -threshold"
    )
    return diff, stat, end


def _rank_correlation(
    pair: PairTables, variant, scaling, th, verdict: str, column: str = "train_acc"
) -> Measured:
    best = need(pair.best(variant, scaling, column))
    curv = need(pair.curvature_at(variant, scaling, best["scale"]))
    rho, _ = kernel.rank_correlation(curv, best["mean"], int(th["min_points"]))
    n = int((np.isfinite(curv) & np.isfinite(best["mean"].to_numpy(float))).sum())
    require(np.isfinite(rho), f"{n} trained scale(s) with finite curvature and accuracy")
    pair.check_settled(variant, scaling, best["scale"][np.isfinite(curv)], column)
    stat = (
        f"Spearman rank correlation over {n} trained scales between initial Tr(H)/‖H‖_F "
        f"(nearest curvature scale, same seed) and best {_ACCURACY[column]}; {verdict}"
    )
    return rho, stat, False


def curvature_ranks_training(
    pair: PairTables, variant, scaling, th, column: str = "train_acc"
) -> Measured:
    """Bias, residual; T and alpha: Spearman(initial curvature, best accuracy)."""
    return _rank_correlation(pair, variant, scaling, th, "aligned if >= threshold", column)


def zone_aligned_with_test(pair: PairTables, variant, scaling, th) -> Measured:
    """:func:`zone_aligned_with_training` on the best test accuracy (App. I)."""
    require(pair.training is not None and "test_acc" in pair.training, "no test_acc column")
    return zone_aligned_with_training(pair, variant, scaling, th, "test_acc")


def best_test_in_zone(pair: PairTables, variant, scaling, th) -> Measured:
    """:func:`best_training_in_zone` on the best test accuracy (App. I)."""
    require(pair.training is not None and "test_acc" in pair.training, "no test_acc column")
    return best_training_in_zone(pair, variant, scaling, th, "test_acc")


def curvature_ranks_test(pair: PairTables, variant, scaling, th) -> Measured:
    """:func:`curvature_ranks_training` on the best test accuracy (App. I)."""
    require(pair.training is not None and "test_acc" in pair.training, "no test_acc column")
    return curvature_ranks_training(pair, variant, scaling, th, "test_acc")


def layernorm_curvature_disconnect(pair: PairTables, variant, scaling, th) -> Measured:
    """LayerNorm variants, T: Spearman(initial curvature, best accuracy), disconnect below."""
    return _rank_correlation(pair, variant, scaling, th, "disconnect if < threshold")


def _above_zone(pair: PairTables, variant: str) -> pd.DataFrame:
    """Best accuracies at the trained T above the variant's zone plus the zone's last."""
    best = need(pair.best(variant, "temperature"))
    span = edges(need(pair.zone_row(variant, "temperature")))
    require(span is not None, f"no temperature zone for '{variant}'")
    upper = span[1]
    best = best[np.isfinite(best["mean"])]
    inside = need(pair.in_zone(variant, "temperature", best["scale"]))
    above = log10(best["scale"]) > math.log10(upper) + LOG_TOL
    if np.any(inside & ~above):
        above[np.flatnonzero(inside & ~above).max()] = True  # the zone's last trained T
    require(above.sum() >= 2, f"{int(above.sum())} trained T of '{variant}' from its zone on")
    pair.check_settled(variant, "temperature", best["scale"][above])
    return best[above]


def residual_falls_faster(pair: PairTables, variant, scaling, th) -> Measured:
    """Slope of best accuracy per decade of T above the zone: residual minus bias."""
    res, bias = _above_zone(pair, "residual"), _above_zone(pair, "bias")
    diff, end = kernel.slope_difference(
        log10(res["scale"]), res["mean"], log10(bias["scale"]), bias["mean"]
    )
    stat = (
        "least-squares slope of best accuracy per decade of T over the trained T above "
        f"each variant's zone and its last inside, residual ({len(res)} T in "
        f"{scale_range(res['scale'])}) minus bias ({len(bias)} T); faster if < -threshold"
    )
    return diff, stat, end


def layernorm_trains_wide_range(pair: PairTables, variant, scaling, th) -> Measured:
    """LayerNorm variants, T: fraction of trained T within good_acc_rel of the variant's
    own best accuracy."""
    best = need(pair.best(variant, "temperature"))
    x, acc = log10(best["scale"]), best["mean"]
    fraction, end = kernel.good_fraction(x, acc, th["good_acc_rel"], 0.0)
    require(np.isfinite(fraction), "T = 1 not inside two finite trained T")
    pair.check_settled(variant, "temperature", best["scale"])
    stat = (
        f"fraction of the log T range {scale_range(best['scale'])} ({len(best)} trained T, "
        f"linear between them) where best accuracy is >= {th['good_acc_rel']:g} x its value "
        f"at T = 1 ({fmt(float(np.interp(0.0, x, acc)))}); wide if >= threshold"
    )
    return fraction, stat, end


def alpha_training_like_temperature(pair: PairTables, variant, scaling, th) -> Measured:
    """Homogeneous, bias, residual: median |best acc(alpha) - best acc(T = alpha^-L)|."""
    curve = need(pair.best_curve(variant, "alpha"))
    temp = need(pair.best_curve(variant, "temperature"))
    k = pair.exponent(variant)
    require(k is not None, f"k of '{variant}' unknown (no output_exponent or depth column)")
    at_t = np.array([value_at(temp, float(a) ** -k)[0] for a in curve.index])
    ok = np.isfinite(at_t) & np.isfinite(curve.to_numpy(float))
    require(ok.sum() >= 2, f"{int(ok.sum())} trained alpha(s) with a trained T = alpha^-{k}")
    _check_matched(pair, variant, curve.index[ok], curve.index.to_numpy(float)[ok] ** -k)
    gap, end = kernel.median_abs_gap(curve.to_numpy(float)[ok], at_t[ok])
    stat = (
        f"median over {int(ok.sum())} trained alphas of |best acc(alpha) - best acc(T = "
        f"alpha^-{k})| (T interpolated in log T); similar if <= threshold"
    )
    return gap, stat, end


def _check_matched(pair: PairTables, variant: str, alphas, temperatures) -> None:
    """Convergence check of an alpha-against-T comparison: the trained ``alphas`` and,
    under temperature, the trained T that bracket each matched T (its interpolation)."""
    pair.check_settled(variant, "alpha", alphas)
    curve, _ = pair.best_curve(variant, "temperature")
    grid = np.sort(curve.index.to_numpy(float)) if curve is not None else np.array([])
    used = set()
    for t in np.asarray(temperatures, float):
        i = int(np.searchsorted(grid, t * (1 - 1e-9)))
        used.update(grid[max(i - 1, 0) : i + 1] if i < len(grid) and grid[i] > t * (1 + 1e-9)
                    else grid[i : i + 1])  # fmt: skip
    pair.check_settled(variant, "temperature", sorted(used))


def _unstable(final: pd.DataFrame, th: dict) -> pd.Series:
    rise = final["max_loss"] > (1 + th["loss_rise_rel"]) * final["initial_loss"]
    return final["diverged"].astype(bool) | rise


def layernorm_alpha_unstable_small_alpha(pair: PairTables, variant, scaling, th) -> Measured:
    """LayerNorm variants: unstable cells at small alpha minus at the matched large T."""
    bound = 1 / th["regime_alpha"]
    a = need(pair.final_rows(variant, "alpha"))
    temp = need(pair.final_rows(variant, "temperature"))
    require("max_loss" in a, "training table has no train_loss")
    small = a[at_most(a["scale"], bound)]
    grid = sorted(set(temp["scale"]))
    matched = {s: nearest_grid(grid, 1 / s) for s in sorted(set(small["scale"]))}
    matched = {s: m for s, m in matched.items() if np.isfinite(m)}
    small = small[small["scale"].isin(list(matched))]
    large_t = temp[temp["scale"].isin(set(matched.values()))]
    reason = f"no trained alpha <= {bound:g} with a trained T = 1/alpha in range"
    require(not (small.empty or large_t.empty), reason)
    diff, end = kernel.fraction_difference(_unstable(small, th), _unstable(large_t, th))
    stat = (
        f"fraction of the {len(small)} alpha cells with alpha <= {bound:g} that diverged or "
        f"whose train loss rose above (1 + {th['loss_rise_rel']:g}) x its epoch-0 loss, minus "
        f"that of the {len(large_t)} temperature cells at T = 1/alpha; less stable if > "
        "threshold"
    )
    return diff, stat, end


def layernorm_alpha_accuracy_drop_small_alpha(pair: PairTables, variant, scaling, th):
    """LayerNorm variants: largest deficit of best accuracy at small alpha against T = 1/alpha."""
    bound = 1 / th["regime_alpha"]
    a = need(pair.best_curve(variant, "alpha"))
    temp = need(pair.best_curve(variant, "temperature"))
    a = a[at_most(a.index, bound) & np.isfinite(a.to_numpy(float))]
    ref = np.array([value_at(temp, 1 / float(alpha))[0] for alpha in a.index])
    ok = np.isfinite(ref)
    require(ok.any(), f"no trained alpha <= {bound:g} with a trained T = 1/alpha in range")
    _check_matched(pair, variant, a.index[ok], 1 / a.index[ok].to_numpy(float))
    gap, end = kernel.max_deficit(a.to_numpy(float)[ok], ref[ok])
    stat = (
        f"largest deficit over {int(ok.sum())} trained alphas <= {bound:g} of best accuracy "
        "under alpha against temperature at T = 1/alpha (interpolated in log T); drop if > "
        "threshold"
    )
    return gap, stat, end


def heldout_follows_train(pair: PairTables, variant, scaling, th) -> Measured:
    """Every trained variant and scaling: Spearman of final test vs train accuracy over the
    (scale, eta0) cells. (Not named ``test_*``: pytest would collect it.)"""
    final = need(pair.final_rows(variant, scaling))
    require("test_acc" in final, "training table has no test_acc")
    cells = final.groupby(["scale", "lr_base"])[["train_acc", "test_acc"]].mean()
    rho, _ = kernel.rank_correlation(cells["train_acc"], cells["test_acc"], int(th["min_points"]))
    require(np.isfinite(rho), f"too few (scale, eta0) cells with finite accuracies ({len(cells)})")
    stat = (
        f"Spearman rank correlation over {len(cells)} (scale, eta0) cells of final train and "
        "test accuracy; follows if >= threshold"
    )
    return rho, stat, False
