"""Every claim on small synthetic tables with a known verdict: holds, fails, untestable, NaN.

``world()`` builds a run's tables in which every claim of the paper holds by
construction (curves are Gaussian bumps in the log of the output scale, so the
homogeneous alpha and temperature curves coincide at T = alpha^-L exactly); each test
then changes the one thing its claim is about.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from goldilocks import claims
from goldilocks.zone import goldilocks_zone

PAIR = {"architecture": "lenet300100", "dataset": "synthetic"}
DEPTH = {
    "homogeneous": (3, 0),
    "bias": (3, 0),
    "residual": (4, 2),
    "layernorm": (3, 0),
    "combined": (4, 2),
    "layernorm_affine": (3, 0),
    "combined_affine": (4, 2),
}
LN = claims.LAYERNORM_FAMILY
#: Four seeds: the fewest the sign test decides on (4 of 4).
SEEDS = (0, 1, 2, 3)


def k_of(variant: str) -> int:
    return 1 if variant in LN else DEPTH[variant][0]


def bump(u, height=3.0, width=3.0):
    return height * np.exp(-(np.asarray(u, float) ** 2) / (2 * width**2))


def ln_bump(u):
    return bump(u, 1.0, 6.0) - 0.5  # peak 0.5, negative far out


def default_curves() -> dict:
    """(variant, scaling) -> Tr/||H||_F as a function of x = log10(scale)."""
    curves = {}
    for v in claims.VARIANTS:
        k = k_of(v)
        shape = ln_bump if v in LN else bump
        peak = float(shape(0))
        curves[(v, "temperature")] = lambda x, s=shape: s(-x)
        if v == "homogeneous":
            curves[(v, "alpha")] = lambda x, s=shape, k=k: s(k * x)
            curves[(v, "joint")] = lambda x, p=peak: np.full_like(x, p)
        else:  # alpha breaks the symmetry at small alpha; joint flat only at large alpha
            low = 0.3 if v not in LN else 1.0
            curves[(v, "alpha")] = lambda x, s=shape, k=k, low=low: np.where(
                x >= 0, s(k * x), s(k * x) * low - 0.5
            )
            curves[(v, "joint")] = lambda x, p=peak: np.where(x >= 0, p, p - 2.0)
    curves[("residual", "joint_residual")] = lambda x: np.where(x <= 0, 2.0, 2.0 + x)
    # T = alpha^m of the others: flat over input-independent logits where a bias
    # dominates (see small_alpha_table), not flat for the LayerNorm variants
    for v in ("bias", "combined", "combined_affine"):
        curves[(v, "joint_residual")] = lambda x: np.full_like(x, 1.0)
    for v in ("layernorm", "layernorm_affine"):
        curves[(v, "joint_residual")] = lambda x: np.where(x <= 0, 0.5 + 0.2 * x, 0.5)
    return curves


def default_accuracy() -> dict:
    """(variant, scaling) -> best final train accuracy as a function of x = log10(scale)."""
    acc = {}
    for v in ("homogeneous", "bias"):
        acc[(v, "temperature")] = lambda x: np.where(
            x <= 0, 0.9 + x / 45, 0.9 - 0.2 * x / 9
        )  # 0.7 at both ends, 0.9 at T = 1
    # residual: falls from 0.9 to 0.15 one grid step above the zone
    acc[("residual", "temperature")] = lambda x: np.select(
        [x <= 0, x <= 6], [0.9 + x / 60, 0.15], 0.1
    )
    for v in LN:  # high everywhere, slightly anti-correlated with the curvature
        acc[(v, "temperature")] = lambda x: 0.85 + 0.03 * np.abs(x) / np.abs(x).max()
        acc[(v, "alpha")] = lambda x: np.where(x < -0.5, 0.2, 0.85 + 0.03 * x / np.abs(x).max())
    for v in ("homogeneous", "bias", "residual"):
        k = k_of(v)
        acc[(v, "alpha")] = lambda x, k=k, f=acc[(v, "temperature")]: f(-k * x)
    return acc


def grid(variant: str, scaling: str, num: int) -> np.ndarray:
    L = DEPTH[variant][0]
    wide = scaling == "temperature" or (variant in LN and scaling != "temperature")
    span = 3 * L if wide else 3
    return np.linspace(-span, span, num)


def curvature_table(curves, variants=claims.VARIANTS, seeds=SEEDS) -> pd.DataFrame:
    rows = []
    for (variant, scaling), f in curves.items():
        if variant not in variants:
            continue
        for x, seed in itertools.product(grid(variant, scaling, 9), seeds):
            L, LL = DEPTH[variant]
            rows.append(
                {
                    **PAIR,
                    "variant": variant,
                    "scaling": scaling,
                    "scale": 10.0**x,
                    "seed": seed,
                    "depth": L,
                    "residual_depth": LL,
                    "hessian_trace_ratio": float(f(np.array([x]))[0]) + 0.004 * (seed - 0.5),
                }
            )
    return pd.DataFrame(rows)


def training_table(accuracy, variants=claims.VARIANTS, seeds=SEEDS, unstable=LN):
    """Epochs 0 and 10 per cell; lr 1.0 reaches acc(x), lr 0.1 five points less.

    Cells of ``unstable`` variants under alpha at alpha < 1 see their loss rise.
    """
    rows = []
    for (variant, scaling), f in accuracy.items():
        if variant not in variants:
            continue
        xs = grid(variant, scaling, 5)
        accs = f(xs)
        for (x, a), lr, seed in itertools.product(zip(xs, accs, strict=True), (0.1, 1.0), seeds):
            final = float(a) - (0.05 if lr == 0.1 else 0.0) + 0.002 * seed
            rises = variant in unstable and scaling == "alpha" and x < 0
            cell = {**PAIR, "variant": variant, "scaling": scaling, "scale": 10.0**x}
            cell.update(lr_base=lr, seed=seed, diverged=False)
            rows.append({**cell, "epoch": 0, "train_acc": 0.1, "test_acc": 0.1, "train_loss": 2.3})
            rows.append(
                {
                    **cell,
                    "epoch": 10,
                    "train_acc": final,
                    "test_acc": final - 0.05,
                    "train_loss": 3.0 if rises else 2.3 * (1 - final),
                }
            )
    return pd.DataFrame(rows)


def kl_table(rel=lambda alpha: np.where(alpha >= 1e-2, 1e-6, 0.5), variants=LN) -> pd.DataFrame:
    rows = []
    for variant, seed, x in itertools.product(variants, SEEDS, np.linspace(-9, 9, 13)):
        alpha = 10.0**x
        rows.append(
            {
                **PAIR,
                "variant": variant,
                "seed": seed,
                "alpha": alpha,
                "kl": 0.0,
                "logit_rel_error": float(rel(np.array(alpha))),
            }
        )
    return pd.DataFrame(rows)


def input_independent(variant: str, alpha):
    """Retained input-dependent share: a bias makes the logits input-independent as
    alpha -> 0 (alpha^4 here), the others keep theirs (1)."""
    alpha = np.asarray(alpha, float)
    if "bias" in variant or "combined" in variant:
        return np.minimum(1.0, alpha**4)
    return np.ones_like(alpha)


def small_alpha_table(share=input_independent) -> pd.DataFrame:
    rows = []
    for variant, seed in itertools.product(claims.VARIANTS, SEEDS):
        for x in grid(variant, "joint_residual", 9):
            alpha = 10.0**x
            rows.append(
                {
                    **PAIR,
                    "variant": variant,
                    "seed": seed,
                    "alpha": alpha,
                    "input_share_rel": float(share(variant, alpha)),
                    "window": False,
                }
            )
    return pd.DataFrame(rows)


def world(curves=None, accuracy=None, kl=None, small_alpha=None) -> dict:
    curvature = curvature_table(curves or default_curves())
    return {
        "curvature": curvature,
        "zone": goldilocks_zone(curvature),
        "training": training_table(accuracy or default_accuracy()),
        "kl": kl_table() if kl is None else kl,
        "small_alpha": small_alpha_table() if small_alpha is None else small_alpha,
    }


def run(claim: str, tables: dict, **thresholds) -> pd.DataFrame:
    result = claims.CLAIMS[claim](**tables, thresholds=thresholds or None)
    assert list(result.columns) == claims.COLUMNS
    assert set(result["verdict"]) <= set(claims.VERDICTS)
    assert result["paper_text"].str.len().min() > 20
    return result


def verdict(result: pd.DataFrame, variant: str, scaling: str | None = None) -> str:
    hit = result[result["variant"] == variant]
    if scaling is not None:
        hit = hit[hit["scaling"] == scaling]
    assert len(hit) == 1, hit
    return hit["verdict"].iloc[0]


def row(result: pd.DataFrame, variant: str, scaling: str | None = None) -> pd.Series:
    hit = result[result["variant"] == variant]
    if scaling is not None:
        hit = hit[hit["scaling"] == scaling]
    return hit.iloc[0]


def _with(tables: dict, name: str, frame: pd.DataFrame) -> dict:
    """``tables`` with ``name`` replaced; the zone follows a new curvature table."""
    out = {**tables, name: frame}
    if name == "curvature":
        out["zone"] = goldilocks_zone(frame)
    return out


def drop(tables: dict, name: str, **where) -> dict:
    """``tables`` with the rows of ``name`` matching ``where`` removed."""
    frame = tables[name]
    mask = np.ones(len(frame), bool)
    for column, value in where.items():
        mask &= frame[column] == value
    return _with(tables, name, frame[~mask].reset_index(drop=True))


def set_nan(tables: dict, name: str, column: str, select) -> dict:
    frame = tables[name].copy()
    frame.loc[select(frame), column] = np.nan
    return _with(tables, name, frame)


S, N, U = claims.SUPPORTED, claims.NOT_SUPPORTED, claims.NOT_TESTABLE


# ------------------------------------------------------------------ the whole world


def test_every_claim_holds_in_the_paper_world():
    result = claims.evaluate_claims(**world())
    assert set(result["claim"]) == set(claims.CLAIMS)
    assert (result["verdict"] == S).all(), result[result["verdict"] != S][["claim", "variant"]]
    assert np.isfinite(result["value"]).all()


def test_no_tables_every_claim_untestable():
    result = claims.evaluate_claims(None, None)
    assert result.empty and list(result.columns) == claims.COLUMNS
    empty = claims.evaluate_claims(pd.DataFrame(), pd.DataFrame(), pd.DataFrame())
    assert empty.empty


def test_curvature_only_gives_untestable_training_rows():
    tables = world()
    result = claims.evaluate_claims(tables["curvature"], tables["zone"])
    training_claims = {"zone_aligned_with_training", "test_follows_train", "residual_falls_faster"}
    part = result[result["claim"].isin(training_claims)]
    assert (part["verdict"] == U).all()
    assert part["statistic"].str.contains("no training table").all()
    assert (result[result["claim"] == "homogeneous_joint_flat"]["verdict"] == S).all()


def test_thresholds_bad_key_and_value():
    with pytest.raises(ValueError, match=r"claims\.flat_sprd: unknown threshold"):
        claims.evaluate_claims(None, None, thresholds={"flat_sprd": 0.1})
    with pytest.raises(ValueError, match=r"claims\.flat_spread: nan is not a finite number"):
        claims.evaluate_claims(None, None, thresholds={"flat_spread": math.nan})
    with pytest.raises(ValueError, match=r"claims\.regime_alpha"):
        claims.resolve_thresholds({"regime_alpha": 1})


def test_missing_column_is_one_line_error():
    tables = world()
    with pytest.raises(ValueError, match="table 'curvature' lacks column"):
        claims.evaluate_claims(tables["curvature"].drop(columns="hessian_trace_ratio"), None)


def test_two_pairs_are_evaluated_apart():
    tables = world()
    other = {k: v.assign(dataset="fmnist") for k, v in tables.items()}
    both = {k: pd.concat([tables[k], other[k]], ignore_index=True) for k in tables}
    # break the claim in one pair only
    curv = both["curvature"]
    sel = (curv["dataset"] == "fmnist") & (curv["variant"] == "homogeneous")
    curv.loc[sel & (curv["scaling"] == "joint"), "hessian_trace_ratio"] += np.log10(
        curv.loc[sel & (curv["scaling"] == "joint"), "scale"]
    )
    result = run("homogeneous_joint_flat", both)
    assert dict(zip(result["dataset"], result["verdict"], strict=True)) == {
        "fmnist": N,
        "synthetic": S,
    }


# --------------------------------------------------------------------- section 3.1


def test_homogeneous_joint_flat():
    assert verdict(run("homogeneous_joint_flat", world()), "homogeneous") == S
    curves = default_curves()
    curves[("homogeneous", "joint")] = lambda x: 3.0 + 0.1 * x  # spread 0.6
    r = run("homogeneous_joint_flat", world(curves))
    assert verdict(r, "homogeneous") == N and row(r, "homogeneous")["value"] == pytest.approx(0.6)
    assert (
        verdict(run("homogeneous_joint_flat", world(curves), identity_tol=0.7), "homogeneous") == S
    )
    r = run("homogeneous_joint_flat", drop(world(), "curvature", scaling="joint"))
    assert verdict(r, "homogeneous") == U and "not in the curvature table" in r["statistic"][0]
    # NaN cells are left out; all NaN but one: untestable
    curves[("homogeneous", "joint")] = lambda x: 3.0 + 0.5 * np.maximum(x, 0)
    assert verdict(run("homogeneous_joint_flat", world(curves)), "homogeneous") == N
    nan = set_nan(world(curves), "curvature", "hessian_trace_ratio", lambda f: f["scale"] > 1)
    r = run("homogeneous_joint_flat", nan)
    assert verdict(r, "homogeneous") == S and "4 NaN scale(s)" in r["statistic"][0]
    nan = set_nan(world(), "curvature", "hessian_trace_ratio", lambda f: f["scale"] != 1)
    assert verdict(run("homogeneous_joint_flat", nan), "homogeneous") == U


def test_homogeneous_alpha_temperature_coincide():
    r = run("homogeneous_alpha_temperature_coincide", world())
    assert verdict(r, "homogeneous") == S and row(r, "homogeneous")["value"] < 0.01
    assert "max over 9 alphas whose T" in row(r, "homogeneous")["statistic"]
    assert row(r, "homogeneous")["decided_by"] == "tolerance"
    curves = default_curves()
    curves[("homogeneous", "temperature")] = lambda x: bump(-x) + 0.5
    assert verdict(run("homogeneous_alpha_temperature_coincide", world(curves)), "homogeneous") == N
    no_t = drop(world(), "curvature", variant="homogeneous", scaling="temperature")
    assert verdict(run("homogeneous_alpha_temperature_coincide", no_t), "homogeneous") == U
    no_depth = world()
    no_depth["curvature"] = no_depth["curvature"].drop(columns="depth")
    assert verdict(run("homogeneous_alpha_temperature_coincide", no_depth), "homogeneous") == U
    # Scales stored to six significant digits, as the pipeline writes them: still exact.
    tables = world()
    tables["curvature"]["scale"] = [float(f"{v:g}") for v in tables["curvature"]["scale"]]
    r = run("homogeneous_alpha_temperature_coincide", tables)
    assert "max over 9 alphas whose T" in row(r, "homogeneous")["statistic"]
    # A temperature grid offset from alpha^-L: an identity is not judged on interpolated
    # values (interpolation has errors of its own).
    tables = world()
    curv = tables["curvature"]
    t = (curv["variant"] == "homogeneous") & (curv["scaling"] == "temperature")
    curv.loc[t, "scale"] *= 10**0.3
    curv.loc[t, "hessian_trace_ratio"] = bump(-np.log10(curv.loc[t, "scale"]))
    r = run("homogeneous_alpha_temperature_coincide", tables)
    assert verdict(r, "homogeneous") == U and "on the T grid" in row(r, "homogeneous")["statistic"]
    # NaN cells: the matched alpha is skipped
    nan = set_nan(
        world(curves), "curvature", "hessian_trace_ratio", lambda f: f["scaling"] == "alpha"
    )
    assert verdict(run("homogeneous_alpha_temperature_coincide", nan), "homogeneous") == U


def test_inhomogeneous_alpha_temperature_differ():
    r = run("inhomogeneous_alpha_temperature_differ", world())
    assert all(verdict(r, v) == S for v in claims.INHOMOGENEOUS)
    curves = default_curves()
    curves[("bias", "alpha")] = lambda x: bump(3 * x)  # the homogeneous symmetry
    r = run("inhomogeneous_alpha_temperature_differ", world(curves))
    assert verdict(r, "bias") == N and verdict(r, "residual") == S
    r = run("inhomogeneous_alpha_temperature_differ", drop(world(), "curvature", variant="bias"))
    assert verdict(r, "bias") == U
    alpha = set_nan(
        world(curves),
        "curvature",
        "hessian_trace_ratio",
        lambda f: (f["scale"] < 0.5) & (f["scaling"] == "alpha"),
    )  # only x >= 0 is left: no small alpha, where the claim is about
    r = run("inhomogeneous_alpha_temperature_differ", alpha)
    assert verdict(r, "bias") == U and verdict(r, "residual") == U
    nan = set_nan(world(), "curvature", "hessian_trace_ratio", lambda f: f["scale"] < 0.5)
    assert verdict(run("inhomogeneous_alpha_temperature_differ", nan), "bias") == U


def test_zone_appears():
    r = run("zone_appears", world())
    assert len(r) == 2 * len(claims.VARIANTS) and (r["verdict"] == S).all()
    curves = default_curves()
    curves[("homogeneous", "alpha")] = lambda x: 1.0 + x  # monotone: peak at the end
    curves[("bias", "temperature")] = lambda x: -1.0 - bump(x)  # never positive: no zone
    r = run("zone_appears", world(curves))
    assert verdict(r, "homogeneous", "alpha") == N
    assert row(r, "homogeneous", "alpha")["value"] == pytest.approx(0.0, abs=0.01)
    assert row(r, "homogeneous", "alpha")["at_grid_end"]
    assert verdict(r, "bias", "temperature") == N
    assert verdict(r, "homogeneous", "temperature") == S
    r = run("zone_appears", drop(world(), "curvature", variant="layernorm_affine"))
    assert verdict(r, "layernorm_affine", "alpha") == U
    assert (
        "variant 'layernorm_affine' not in the curvature table"
        in row(r, "layernorm_affine", "alpha")["statistic"]
    )
    # NaN cells beyond the peak: the peak becomes the last finite scale
    nan = set_nan(world(), "curvature", "hessian_trace_ratio", lambda f: f["scale"] > 1.5)
    nan["zone"] = goldilocks_zone(nan["curvature"])
    assert verdict(run("zone_appears", nan), "homogeneous", "alpha") == N


def test_joint_flat_large_alpha_and_breaks_small_alpha():
    flat, breaks = run("joint_flat_large_alpha", world()), run("joint_breaks_small_alpha", world())
    assert (flat["verdict"] == S).all() and (breaks["verdict"] == S).all()
    curves = default_curves()
    curves[("bias", "joint")] = lambda x: np.full_like(x, 3.0)  # flat everywhere
    curves[("residual", "joint")] = lambda x: 3.0 + 0.5 * x  # never flat
    flat, breaks = (
        run(c, world(curves)) for c in ("joint_flat_large_alpha", "joint_breaks_small_alpha")
    )
    assert verdict(flat, "bias") == S and verdict(breaks, "bias") == N
    assert verdict(flat, "residual") == N and verdict(breaks, "residual") == S
    tables = drop(world(), "curvature", variant="layernorm", scaling="joint")
    assert verdict(run("joint_flat_large_alpha", tables), "layernorm") == U
    assert verdict(run("joint_breaks_small_alpha", tables), "layernorm") == U
    # every small-alpha cell NaN: breaking cannot be judged, flatness still can
    nan = set_nan(world(), "curvature", "hessian_trace_ratio", lambda f: f["scale"] < 0.5)
    assert verdict(run("joint_breaks_small_alpha", nan), "bias") == U
    assert verdict(run("joint_flat_large_alpha", nan), "bias") == S


def test_residual_small_alpha_recoverable():
    r = run("residual_small_alpha_recoverable", world())
    assert verdict(r, "residual") == S and "under joint (T = alpha^k)" in r["statistic"][0]
    curves = default_curves()
    curves[("residual", "joint_residual")] = lambda x: 2.0 + x
    assert verdict(run("residual_small_alpha_recoverable", world(curves)), "residual") == N
    r = run(
        "residual_small_alpha_recoverable", drop(world(), "curvature", scaling="joint_residual")
    )
    assert verdict(r, "residual") == U
    assert "scaling 'joint_residual' of 'residual' not in the curvature table" in r["statistic"][0]
    nan = set_nan(
        world(curves), "curvature", "hessian_trace_ratio", lambda f: f["scale"] < 0.01
    )  # leaves alpha 10^-1.5 only: one point, no spread
    assert verdict(run("residual_small_alpha_recoverable", nan), "residual") == U
    # flat but input-independent: not recoverable
    lost = small_alpha_table(lambda v, a: np.full_like(np.asarray(a, float), 0.1))
    r = run("residual_small_alpha_recoverable", world(small_alpha=lost))
    assert verdict(r, "residual") == N and row(r, "residual")["value"] == pytest.approx(2.5)
    no_table = run("residual_small_alpha_recoverable", {**world(), "small_alpha": None})
    assert verdict(no_table, "residual") == U and "no small_alpha table" in no_table["statistic"][0]


def test_small_alpha_recoverable_only_residual():
    r = run("small_alpha_recoverable_only_residual", world())
    assert set(r["variant"]) == set(claims.INHOMOGENEOUS) - {"residual"}
    assert (r["verdict"] == S).all()
    # bias: flat, so only the input dependence makes it not recoverable
    assert "least input-dependent share" in row(r, "bias")["statistic"]
    assert row(r, "bias")["value"] == pytest.approx(10 * 0.5)  # capped: alpha^4 is tiny
    keeps = small_alpha_table(lambda v, a: np.ones_like(np.asarray(a, float)))
    r = run("small_alpha_recoverable_only_residual", world(small_alpha=keeps))
    assert verdict(r, "bias") == N and verdict(r, "combined") == N  # flat and input-dependent
    assert verdict(r, "layernorm") == S  # still not flat


def test_layernorm_peak_lower():
    r = run("layernorm_peak_lower", world())
    assert len(r) == 2 * len(LN) and (r["verdict"] == S).all()
    assert row(r, "layernorm", "alpha")["value"] == pytest.approx(0.5 / 3, abs=0.01)
    curves = default_curves()
    curves[("layernorm", "temperature")] = lambda x: bump(-x, 2.5)
    r = run("layernorm_peak_lower", world(curves))
    assert verdict(r, "layernorm", "temperature") == N and verdict(r, "layernorm", "alpha") == S
    r = run("layernorm_peak_lower", drop(world(), "curvature", variant="homogeneous"))
    assert (r["verdict"] == U).all()
    curves[("homogeneous", "alpha")] = lambda x: -bump(x)  # no positive reference peak
    r = run("layernorm_peak_lower", world(curves))
    assert (
        verdict(r, "layernorm", "alpha") == U
        and "not positive" in row(r, "layernorm", "alpha")["statistic"]
    )


def test_layernorm_goes_negative():
    r = run("layernorm_goes_negative", world())
    assert len(r) == 3 * len(LN) and (r["verdict"] == S).all()
    curves = default_curves()
    curves[("layernorm", "temperature")] = lambda x: bump(-x, 1.0, 9.0) + 0.1
    r = run("layernorm_goes_negative", world(curves))
    assert verdict(r, "layernorm", "temperature") == N
    r = run("layernorm_goes_negative", drop(world(), "curvature", variant="combined_affine"))
    assert (r[r["variant"] == "combined_affine"]["verdict"] == U).all()
    nan = set_nan(
        world(), "curvature", "hessian_trace_ratio", lambda f: f["variant"] == "layernorm"
    )
    r = run("layernorm_goes_negative", nan)
    assert (r[r["variant"] == "layernorm"]["verdict"] == U).all()


def test_layernorm_linear_output():
    holds = run("layernorm_linear_output_holds", world())
    breaks = run("layernorm_linear_output_breaks_small_alpha", world())
    assert (holds["verdict"] == S).all() and (breaks["verdict"] == S).all()
    linear_everywhere = kl_table(rel=lambda a: np.full_like(a, 1e-8))
    r = run("layernorm_linear_output_breaks_small_alpha", world(kl=linear_everywhere))
    assert (r["verdict"] == N).all()
    broken_at_one = kl_table(rel=lambda a: np.where(a <= 10, 0.5, 1e-6))
    assert (run("layernorm_linear_output_holds", world(kl=broken_at_one))["verdict"] == N).all()
    no_kl = {**world(), "kl": None}
    assert (run("layernorm_linear_output_holds", no_kl)["verdict"] == U).all()
    kl = kl_table()
    kl.loc[kl["alpha"] < 0.5, "logit_rel_error"] = np.nan
    r = run("layernorm_linear_output_breaks_small_alpha", world(kl=kl))
    assert (r["verdict"] == U).all()
    assert (run("layernorm_linear_output_holds", world(kl=kl))["verdict"] == S).all()


# --------------------------------------------------------------------- section 3.2


def test_zone_aligned_with_training():
    r = run("zone_aligned_with_training", world())
    assert (r["verdict"] == S).all() and len(r) == 4
    acc = default_accuracy()
    acc[("bias", "temperature")] = lambda x: 0.5 + 0.02 * np.abs(x)  # worst at the peak
    r = run("zone_aligned_with_training", world(accuracy=acc))
    assert verdict(r, "bias", "temperature") == N and verdict(r, "residual", "temperature") == S
    no_alpha = drop(world(), "training", scaling="alpha")
    r = run("zone_aligned_with_training", no_alpha)
    assert verdict(r, "bias", "alpha") == U and verdict(r, "bias", "temperature") == S
    # no zone (the curve is never positive): untestable; each seed's zone comes from its
    # own curve, the zone table gives only the threshold
    curves = default_curves()
    curves[("bias", "temperature")] = lambda x: -1.0 - bump(x)
    r = run("zone_aligned_with_training", world(curves))
    assert verdict(r, "bias", "temperature") == U and "peak not positive" in r["statistic"][0]
    # a NaN (diverged at every eta0) cell: its epoch-0 accuracy counts
    tables = world()
    tr = tables["training"]
    cell = (tr["variant"] == "bias") & (tr["scaling"] == "temperature") & (tr["scale"] == 1.0)
    tr.loc[cell & (tr["epoch"] == 10), ["train_acc", "test_acc", "train_loss"]] = np.nan
    tr.loc[cell, "diverged"] = True
    r = run("zone_aligned_with_training", tables)
    assert verdict(r, "bias", "temperature") == N  # 0.1 inside against 0.75 outside


def test_best_training_in_zone():
    r = run("best_training_in_zone", world())
    assert (r["verdict"] == S).all() and len(r) == 4
    assert row(r, "bias", "temperature")["value"] == pytest.approx(0.1, abs=0.01)
    acc = default_accuracy()
    # better on average inside, but the single best cell lies outside
    acc[("bias", "temperature")] = lambda x: np.select([x == 0, x < -5], [0.9, 0.95], 0.5)
    tables = world(accuracy=acc)
    assert verdict(run("best_training_in_zone", tables), "bias", "temperature") == N
    assert verdict(run("zone_aligned_with_training", tables), "bias", "temperature") == S
    assert (
        verdict(run("best_training_in_zone", tables, best_in_zone_tol=0.06), "bias", "temperature")
        == S
    )
    no_zone = {**world(), "zone": None}
    r = run("best_training_in_zone", no_zone)
    assert (r["verdict"] == U).all() and r["statistic"].str.contains("no zone table").all()
    nan = set_nan(
        world(), "training", "train_acc", lambda f: (f["scale"] == 1.0) & (f["epoch"] > 0)
    )  # NaN (not diverged) at the only in-zone scale: nothing inside
    assert verdict(run("best_training_in_zone", nan), "bias", "temperature") == U


def test_inside_against_outside_compares_at_one_grid_density():
    """A refined training grid: the far scales (one every 9 decades) are left out of the
    inside/outside comparison, so a lone far cell cannot win a max over a sparser
    stretch, and the dense stretch decides (docs/claims.md)."""
    tables = world()
    tr = tables["training"]
    cells = (tr["variant"] == "bias") & (tr["scaling"] == "temperature")
    xs = sorted(np.log10(tr.loc[cells, "scale"].unique()))
    assert xs == pytest.approx([-9, -4.5, 0, 4.5, 9])
    at_zero = tr[cells & (tr["scale"] == 1.0)]
    dense = [at_zero.assign(scale=10.0**x, temperature=10.0**x) for x in (-2.25, 2.25)]
    far = cells & (tr["scale"] == 1e9) & (tr["epoch"] > 0)
    tr.loc[far, "train_acc"] = 0.99  # the best cell anywhere, 9 decades out
    refined = {**tables, "training": pd.concat([tr, *dense], ignore_index=True)}
    r = run("best_training_in_zone", refined)
    assert verdict(r, "bias", "temperature") == S  # 1e9 is not compared
    assert (
        "trained scale(s) in the seed's zone minus the highest over the"
        in row(r, "bias", "temperature")["statistic"]
    )
    # the uniform grid compares every scale: the far cell wins
    assert verdict(run("best_training_in_zone", {**tables, "training": tr}), "bias",
                   "temperature") == N  # fmt: skip


def test_final_accuracy_of_a_diverged_cell_is_its_initial():
    tables = world()
    tr = tables["training"]
    cell = (tr["variant"] == "bias") & (tr["scale"] == 1.0) & (tr["lr_base"] == 1.0)
    tr.loc[cell & (tr["epoch"] == 10), ["train_acc", "train_loss"]] = np.nan
    tr.loc[cell, "diverged"] = True
    final = claims.final_accuracy(tr, diverged="initial")
    hit = final[(final["variant"] == "bias") & (final["scale"] == 1.0) & (final["lr_base"] == 1.0)]
    assert (hit["train_acc"] == 0.1).all() and np.isinf(hit["max_loss"]).all()
    best = claims.best_accuracy(
        final[(final["variant"] == "bias") & (final["scaling"] == "temperature")]
    )
    at_one = best[best["scale"] == 1.0].iloc[0]
    assert at_one["mean"] == pytest.approx(0.85 + 0.003)  # lr 0.1 wins, seeds 0..3
    assert at_one["seeds"] == 4 and set(at_one["per_seed"]) == set(SEEDS)


def test_curvature_ranks_training_with_seed_spread():
    r = run("curvature_ranks_training", world())
    assert (r["verdict"] == S).all()
    assert row(r, "bias", "temperature")["value"] == pytest.approx(1.0)
    assert list(row(r, "bias", "temperature")["value_per_seed"]) == [1.0] * 4
    acc = default_accuracy()
    acc[("bias", "temperature")] = lambda x: 0.5 + 0.02 * np.abs(x)
    r = run("curvature_ranks_training", world(accuracy=acc))
    assert verdict(r, "bias", "temperature") == N and row(r, "bias", "temperature")["value"] < 0
    one_seed = drop(world(), "training", seed=1)  # seeds 0, 2, 3 paired: too few
    r = run("curvature_ranks_training", one_seed)
    assert verdict(r, "bias", "temperature") == claims.INCONCLUSIVE
    assert row(r, "bias", "temperature")["n_seeds"] == 3
    assert "too few seeds" in row(r, "bias", "temperature")["inconclusive_reason"]
    r = run("curvature_ranks_training", world(), min_points=6)
    assert (r["verdict"] == U).all()
    nan = set_nan(world(), "curvature", "hessian_trace_ratio", lambda f: f["scale"] > 1e-3)
    assert verdict(run("curvature_ranks_training", nan), "bias", "temperature") == U


def test_layernorm_curvature_disconnect():
    r = run("layernorm_curvature_disconnect", world())
    assert len(r) == len(LN) and (r["verdict"] == S).all()
    acc = default_accuracy()
    acc[("layernorm", "temperature")] = lambda x: 0.9 - 0.01 * np.abs(x)  # tracks curvature
    r = run("layernorm_curvature_disconnect", world(accuracy=acc))
    assert verdict(r, "layernorm", "temperature") == N
    r = run("layernorm_curvature_disconnect", drop(world(), "training", variant="combined"))
    assert verdict(r, "combined", "temperature") == U


def test_residual_falls_faster():
    r = run("residual_falls_faster", world())
    assert verdict(r, "residual") == S and row(r, "residual")["value"] < 0
    acc = default_accuracy()
    acc[("residual", "temperature")] = acc[("bias", "temperature")]
    acc[("bias", "temperature")] = lambda x: np.where(x <= 0, 0.9, 0.1)
    assert verdict(run("residual_falls_faster", world(accuracy=acc)), "residual") == N
    r = run("residual_falls_faster", drop(world(), "training", variant="bias"))
    assert verdict(r, "residual") == U and "'bias' not in the training table" in r["statistic"][0]
    nan = set_nan(
        world(),
        "training",
        "train_acc",
        lambda f: (f["variant"] == "residual") & (f["scale"] > 1) & (f["epoch"] > 0),
    )  # NaN without divergence: left out, one point remains
    assert verdict(run("residual_falls_faster", nan), "residual") == U


def test_layernorm_trains_wide_range():
    r = run("layernorm_trains_wide_range", world())
    assert (r["verdict"] == S).all() and row(r, "layernorm")["value"] == 1.0
    assert "its value at T = 1" in row(r, "layernorm")["statistic"]
    acc = default_accuracy()
    acc[("layernorm", "temperature")] = lambda x: np.where(x == 0, 0.9, 0.3)
    r = run("layernorm_trains_wide_range", world(accuracy=acc))
    # >= 0.9 x 0.9 only near T = 1: 0.09 / 0.6 of each of the two segments next to it
    # (4.5 decades each) out of 18 decades
    assert verdict(r, "layernorm") == N
    assert row(r, "layernorm")["value"] == pytest.approx(2 * 0.15 * 4.5 / 18, abs=0.005)
    r = run("layernorm_trains_wide_range", {**world(), "training": None})
    assert (r["verdict"] == U).all()
    nan = set_nan(
        world(), "training", "train_acc", lambda f: (f["variant"] == "layernorm") & (f["epoch"] > 0)
    )
    assert verdict(run("layernorm_trains_wide_range", nan), "layernorm") == U


# ------------------------------------------------------------------------ appendix H


def test_alpha_training_like_temperature():
    r = run("alpha_training_like_temperature", world())
    assert len(r) == 3 and (r["verdict"] == S).all() and r["value"].max() < 1e-9
    acc = default_accuracy()
    acc[("bias", "alpha")] = lambda x: np.full_like(x, 0.4)
    r = run("alpha_training_like_temperature", world(accuracy=acc))
    assert verdict(r, "bias") == N and verdict(r, "homogeneous") == S
    r = run("alpha_training_like_temperature", drop(world(), "training", scaling="alpha"))
    assert (r["verdict"] == U).all()
    nan = set_nan(
        world(),
        "training",
        "train_acc",
        lambda f: (f["scaling"] == "alpha") & (f["scale"] != 1.0) & (f["epoch"] > 0),
    )
    assert (run("alpha_training_like_temperature", nan)["verdict"] == U).all()


def test_layernorm_alpha_instability_and_accuracy_drop():
    unstable = run("layernorm_alpha_unstable_small_alpha", world())
    drop_ = run("layernorm_alpha_accuracy_drop_small_alpha", world())
    assert (unstable["verdict"] == S).all() and (drop_["verdict"] == S).all()
    assert row(unstable, "layernorm")["value"] == pytest.approx(1.0)
    # stable, and as accurate as under T
    acc = default_accuracy()
    acc[("layernorm", "alpha")] = lambda x: acc[("layernorm", "temperature")](-x)
    tables = world(accuracy=acc)
    tables["training"] = training_table(acc, unstable=("combined",))
    assert verdict(run("layernorm_alpha_unstable_small_alpha", tables), "layernorm") == N
    assert verdict(run("layernorm_alpha_accuracy_drop_small_alpha", tables), "layernorm") == N
    assert verdict(run("layernorm_alpha_unstable_small_alpha", tables), "combined") == S
    no_alpha = drop(world(), "training", scaling="alpha")
    assert (run("layernorm_alpha_unstable_small_alpha", no_alpha)["verdict"] == U).all()
    no_loss = world()
    no_loss["training"] = no_loss["training"].drop(columns="train_loss")
    r = run("layernorm_alpha_unstable_small_alpha", no_loss)
    assert (r["verdict"] == U).all() and r["statistic"].str.contains("train_loss").all()
    # a diverged cell counts as unstable even with a NaN loss
    tables = world(accuracy=acc)
    tables["training"] = training_table(acc, unstable=())
    tr = tables["training"]
    cell = (tr["variant"] == "layernorm") & (tr["scaling"] == "alpha") & (tr["scale"] < 1e-5)
    tr.loc[cell & (tr["epoch"] == 10), ["train_acc", "test_acc", "train_loss"]] = np.nan
    tr.loc[cell, "diverged"] = True
    assert verdict(run("layernorm_alpha_unstable_small_alpha", tables), "layernorm") == S
    assert verdict(run("layernorm_alpha_accuracy_drop_small_alpha", tables), "layernorm") == S


# ------------------------------------------------------------------------ appendix I


def test_test_follows_train():
    r = run("test_follows_train", world())
    present = r[r["verdict"] != U]
    assert (present["verdict"] == S).all()
    assert len(present) == len(default_accuracy())
    tables = world()
    tr = tables["training"]
    sel = (tr["variant"] == "bias") & (tr["scaling"] == "temperature")
    tr.loc[sel, "test_acc"] = 1 - tr.loc[sel, "train_acc"]
    r = run("test_follows_train", tables)
    assert verdict(r, "bias", "temperature") == N and row(r, "bias", "temperature")["value"] < 0
    no_test = world()
    no_test["training"] = no_test["training"].drop(columns="test_acc")
    assert (run("test_follows_train", no_test)["verdict"] == U).all()
    nan = set_nan(world(), "training", "test_acc", lambda f: f["scale"] != 1.0)
    r = run("test_follows_train", nan)
    assert verdict(r, "bias", "temperature") == U  # 2 cells left (one scale, two eta0)


# ---------------------------------------------------------------------------- helpers


def test_a_missing_cell_drops_its_seed_not_a_fake_slope():
    curves = default_curves()
    tables = world(curves)
    curv = tables["curvature"]
    joint = (curv["variant"] == "homogeneous") & (curv["scaling"] == "joint")
    curv.loc[joint & (curv["seed"] == 1), "hessian_trace_ratio"] += 1.0  # seeds differ by 1
    assert verdict(run("homogeneous_joint_flat", tables), "homogeneous") == S
    missing = curv[~(joint & (curv["seed"] == 1) & (curv["scale"] == 1.0))]
    r = run("homogeneous_joint_flat", {**tables, "curvature": missing})
    assert verdict(r, "homogeneous") == S and row(r, "homogeneous")["value"] < 0.01
    # a NaN cell is not a missing one: seed 1 stays
    nan = set_nan(
        tables,
        "curvature",
        "hessian_trace_ratio",
        lambda f: joint & (f["seed"] == 1) & (f["scale"] == 1.0),
    )
    r = run("homogeneous_joint_flat", nan)  # per seed: seed 1's offset is no slope
    assert verdict(r, "homogeneous") == S and row(r, "homogeneous")["value"] < 0.01
    assert row(r, "homogeneous")["n_seeds"] == 4


def test_helpers_value_at_nearest_grid_spearman():
    curve = pd.Series([0.0, 1.0, np.nan], index=[1.0, 10.0, 100.0])
    assert claims.value_at(curve, 10.0) == (1.0, True)
    assert claims.value_at(curve, 10**0.5)[0] == pytest.approx(0.5)
    assert math.isnan(claims.value_at(curve, 30.0)[0])  # next to a NaN
    assert math.isnan(claims.value_at(curve, 1e3)[0])  # outside
    assert claims.nearest_grid([1.0, 10.0, 100.0], 20.0) == 10.0
    assert claims.nearest_grid([1.0, 10.0, 100.0], 300.0) == 100.0
    assert math.isnan(claims.nearest_grid([1.0, 10.0, 100.0], 1e3))
    assert claims.spearman([1, 2, 3], [3, 2, 1]) == (-1.0, 3)
    assert claims.spearman([1, 2, 3], [5, 5, 5]) == (0.0, 3)
    assert claims.spearman([1, np.nan, 3], [1, 2, np.nan])[1] == 1


# ------------------------------------------------------------- decision and report


def test_rows_carry_the_per_seed_columns():
    r = run("layernorm_goes_negative", world())
    one = row(r, "layernorm", "joint")
    assert one["n_seeds"] == 4 and list(one["seeds"]) == list(SEEDS)
    assert one["seeds_passing"] == 4 and one["decided_by"] == "sign_test_0.10"
    assert one["ci_low"] == min(one["value_per_seed"]) and one["ci_high"] == max(
        one["value_per_seed"]
    )
    assert one["value"] == pytest.approx(np.median(one["value_per_seed"]))
    assert one["inconclusive_reason"] == "" and bool(one["resolution_robust"])
    assert bool(one["at_grid_end"])  # the joint curve's minimum: its small-alpha end
    # under T the bump dips below 0 only at the outer scales, on the even sub-grid alone
    assert not row(r, "layernorm", "temperature")["resolution_robust"]
    # seeds that split: two seeds' curves never go negative
    tables = world()
    curv = tables["curvature"]
    ln = (curv["variant"] == "layernorm") & (curv["scaling"] == "temperature")
    curv.loc[ln & curv["seed"].isin([2, 3]), "hessian_trace_ratio"] += 5.0
    split = row(run("layernorm_goes_negative", tables), "layernorm", "temperature")
    assert split["verdict"] == claims.INCONCLUSIVE and split["seeds_passing"] == 2
    assert split["inconclusive_reason"].startswith("split seeds: 2 of 4 pass")
    # training claims are not checked on sub-grids; not-testable rows leave them empty
    t = run("curvature_ranks_training", world())
    assert t["resolution_robust"].isna().all()
    u = run("layernorm_goes_negative", drop(world(), "curvature", variant="combined"))
    assert row(u, "combined", "alpha")["n_seeds"] == 0
    assert pd.isna(row(u, "combined", "alpha")["resolution_robust"])


def test_a_verdict_that_needs_every_scale_is_not_resolution_robust():
    curves = default_curves()
    # negative at one grid scale only (x = 0, an even position of the 9-point grid)
    curves[("layernorm", "joint")] = lambda x: np.where(np.abs(x) < 1e-9, -1.0, 1.0)
    r = run("layernorm_goes_negative", world(curves))
    one = row(r, "layernorm", "joint")
    assert one["verdict"] == S and not one["resolution_robust"]


def test_claims_html_and_figure(tmp_path):
    from goldilocks.claims_report import (
        claims_figure,
        claims_html,
        claims_markdown,
        summary_line,
    )

    result = claims.evaluate_claims(**drop(world(), "training", seed=3))
    page = claims_html(result)
    assert page.count("<tr>") > len(claims.SPECS)  # the summary grid, then the table
    for column in ("n_seeds", "value_per_seed", "inconclusive_reason", "resolution_robust"):
        assert column in page
    assert "testable rows decided" in summary_line(result) and "inconclusive" in page
    markdown = claims_markdown(result)
    testable = result[result["verdict"] != claims.NOT_TESTABLE]
    table_rows = [ln for ln in markdown.splitlines() if ln.startswith("| ") and "---" not in ln]
    assert len(table_rows) == len(testable) + 1  # a header and one row per testable row
    assert markdown.count("**supported**") == (result["verdict"] == S).sum()
    assert summary_line(result) in markdown
    figure = claims_figure(result)
    assert len([ax for ax in figure.axes if ax.get_visible()]) == len(claims.SPECS)
    figure.savefig(tmp_path / "claims.png", dpi=50)
    assert (tmp_path / "claims.png").stat().st_size > 5_000


def test_differ_needs_the_seeds_to_agree_on_the_direction():
    r = run("inhomogeneous_alpha_temperature_differ", world())
    assert row(r, "bias")["value"] < -0.25  # alpha below T at small alpha, on every seed
    tables = world()
    curv = tables["curvature"]
    small = (curv["variant"] == "bias") & (curv["scaling"] == "alpha") & (curv["scale"] < 0.5)
    # seeds 2 and 3 differ as much, the other way
    flip = small & curv["seed"].isin([2, 3])
    curv.loc[flip, "hessian_trace_ratio"] += 2 * abs(row(r, "bias")["value"]) + 0.2
    flipped = row(run("inhomogeneous_alpha_temperature_differ", tables), "bias")
    assert flipped["verdict"] == claims.INCONCLUSIVE and flipped["seeds_passing"] == 2
    assert min(flipped["value_per_seed"]) < -0.25 < 0.25 < max(flipped["value_per_seed"])


def test_alignment_claims_on_test_accuracy_read_test_acc():
    tables = world()
    for claim in ("zone_aligned_with_test", "best_test_in_zone", "curvature_ranks_test"):
        r = run(claim, tables)
        assert (r["verdict"] == S).all() and "test accuracy" in r["statistic"][0], claim
    # test accuracy that falls where train accuracy peaks: the train claim still holds
    flipped = tables["training"].copy()
    flipped["test_acc"] = 1.0 - flipped["train_acc"]
    tables = _with(tables, "training", flipped)
    assert verdict(run("zone_aligned_with_training", tables), "bias", "temperature") == S
    assert verdict(run("zone_aligned_with_test", tables), "bias", "temperature") == N
    assert verdict(run("curvature_ranks_test", tables), "bias", "temperature") == N
    no_test = _with(tables, "training", flipped.drop(columns="test_acc"))
    assert verdict(run("best_test_in_zone", no_test), "bias", "temperature") == U


def test_temperature_probe_more_robust():
    """The paper world: every inhomogeneous alpha zone is pushed off the homogeneous one
    (the alpha curves break at small alpha), every T zone sits on it."""
    r = run("temperature_probe_more_robust", world())
    assert set(r["variant"]) == set(claims.INHOMOGENEOUS) and (r["verdict"] == S).all()
    assert (r["value"] > 0).all()
    # the same curve under alpha as under T (mapped by T = alpha^-k): no difference
    curves = default_curves()
    for v in claims.INHOMOGENEOUS:
        k = k_of(v)
        curves[(v, "alpha")] = lambda x, f=curves[(v, "temperature")], k=k: f(-k * x)
    r = run("temperature_probe_more_robust", world(curves))
    assert (r["verdict"] == N).all() and (r["value"] == 0).all()  # ties are exactly 0
    no_zone = drop(world(), "curvature", variant="homogeneous", scaling="alpha")
    assert (run("temperature_probe_more_robust", no_zone)["verdict"] == U).all()


def _settled(tables: dict) -> pd.DataFrame:
    """A convergence table (docs/method.md section 5.8) where every cell converged."""
    keys = ["architecture", "dataset", "variant", "scaling", "scale", "seed", "lr_base"]
    conv = tables["training"].groupby(keys, as_index=False)["diverged"].any()
    return conv.assign(converged=~conv["diverged"], status="converged")


def test_unconverged_deciding_cell_makes_a_training_row_inconclusive():
    tables = world()
    tables["convergence"] = conv = _settled(tables)
    r = run("zone_aligned_with_training", tables)
    assert (r["verdict"] == S).all()  # all converged: the old verdict
    # seed 0's best cell (rate 1.0) at one bias/temperature scale still falling
    bias_t = (conv["variant"] == "bias") & (conv["scaling"] == "temperature")
    scale = sorted(set(conv.loc[bias_t, "scale"]))[2]
    at = bias_t & (conv["scale"] == scale) & (conv["seed"] == 0)
    conv.loc[at & (conv["lr_base"] == 1.0), "converged"] = False
    r = run("zone_aligned_with_training", tables)
    assert (
        verdict(r, "bias", "temperature") == claims.INCONCLUSIVE
        and verdict(r, "residual", "temperature") == S
    )
    why = row(r, "bias", "temperature")["inconclusive_reason"]
    assert why.startswith("not converged: seed 0: 1 of 5 trained scales")
    assert np.isfinite(row(r, "bias", "temperature")["value"])  # still computed and shown
    from goldilocks.claims_report import claims_figure, claims_html

    assert "not converged: seed 0: 1 of 5 trained scales" in claims_html(r)
    assert len(claims_figure(r).axes) >= 1  # the figure draws the row like the others
    # the worse rate's cell not converging decides nothing
    conv.loc[at, "converged"] = [bool(lr == 1.0) for lr in conv.loc[at, "lr_base"]]
    assert verdict(run("zone_aligned_with_training", tables), "bias", "temperature") == S
    # a scale where every rate diverged is decided (one outside the zone: the verdict stays)
    low = sorted(set(conv.loc[bias_t, "scale"]))[0]
    tr = tables["training"]
    cell = (tr["variant"] == "bias") & (tr["scaling"] == "temperature") & (tr["scale"] == low)
    tr.loc[cell & (tr["seed"] == 0), "diverged"] = True
    gone = bias_t & (conv["scale"] == low) & (conv["seed"] == 0)
    conv.loc[gone, ["diverged", "converged"]] = [True, False]
    r = run("zone_aligned_with_training", tables)
    assert verdict(r, "bias", "temperature") == S
