"""Line plots: curves against the scale (figures 1 and 6) and against alpha (figure 3)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from goldilocks.figures.style import (
    AXIS_SYMBOL,
    ROW_LABELS,
    TRACE_RATIO,
    new_figure,
    pair_title,
    range_label,
    seeds_label,
    styled,
    threshold_label,
    variants_of,
    zone_of,
)
from goldilocks.zone import LOG_TOL, edges

#: The joint curve with the small-alpha exponent m (T = alpha^m; L - 𝓛 for residual),
#: drawn in the joint row of figure 1.
SECOND_JOINT = {"joint": "joint_residual"}


MATRICES = {"hessian": "Hessian $H$", "gterm": "G-term", "hterm": "H-term"}


#: KL values below this (round-off, or exactly 0 at alpha = 1) are drawn at it.
KL_FLOOR = 1e-18


#: Relative logit deviations below this (exactly 0 at alpha = 1) are drawn at it.
REL_FLOOR = 1e-12


def curve_with_band(
    ax,
    frame: pd.DataFrame,
    column: str,
    label: str | None = None,
    color=None,
    x: str = "scale",
    floor: float | None = None,
) -> None:
    """Seed mean of ``column`` against ``x`` (log axis) with a min-max band over seeds.

    With ``floor``, values below it are drawn at it (for a log y-axis).
    """
    values = frame[[x, column]].copy()
    if floor is not None:
        values[column] = values[column].clip(lower=floor)
    stats = values.groupby(x)[column].agg(["mean", "min", "max"]).sort_index()
    line = ax.plot(stats.index, stats["mean"], marker="o", ms=2, lw=1.0, label=label, color=color)
    ax.fill_between(
        stats.index, stats["min"], stats["max"], alpha=0.25, lw=0, color=line[0].get_color()
    )
    ax.set_xscale("log")


def small_alpha_exponent_of(rows: pd.DataFrame) -> int | None:
    """``m`` of ``joint_residual`` rows, read off their (alpha, T = alpha^m): the rounded
    log T / log alpha of a row with alpha != 1 and a finite T; None where none has one
    (or the rows lack the columns)."""
    if not {"alpha", "temperature"} <= set(rows.columns):
        return None
    alpha, temperature = rows["alpha"].to_numpy(float), rows["temperature"].to_numpy(float)
    ok = (alpha != 1) & np.isfinite(temperature) & (temperature > 0)
    if not ok.any():
        return None
    return int(np.round(np.median(np.log(temperature[ok]) / np.log(alpha[ok]))))


def _curve_panel(ax, sub: pd.DataFrame, zone, scaling: str, label=None, color=None) -> None:
    """One figure-1 curve: seed-mean Tr(H)/‖H‖_F with its band and its zone shaded."""
    curve_with_band(ax, sub, "hessian_trace_ratio", label, color)
    ax.set_xlabel(range_label(AXIS_SYMBOL[scaling], sub["scale"]))
    z = zone_of(zone, sub, sub["variant"].iloc[0], scaling)
    if z is not None:
        ax.axvspan(*_zone_span(z, sub["scale"]), color=color or "gold", alpha=0.3, lw=0)
        for bound in edges(z):
            ax.axvline(bound, color=color or "darkgoldenrod", ls="--", lw=0.8)


@styled("whitegrid")
def figure_1(curvature: pd.DataFrame, zone: pd.DataFrame | None = None) -> Figure:
    """Tr/||H||_F against the scale: rows alpha / joint / temperature, columns variants.

    With ``zone`` (``results/goldilocks_zone.parquet``) the Goldilocks zone is shaded. A
    variant with ``joint_residual`` cells (T = alpha^m, the small-alpha exponent; m = L-𝓛
    for residual, paper Appendix D) gets that curve as a second, red one in its joint
    panel, labelled with its m (where m = k the two curves coincide: the same alpha and T).
    """
    rows = [s for s in ("alpha", "joint", "temperature") if s in set(curvature["scaling"])]
    cols = variants_of(curvature)
    fig, axes = new_figure(len(rows), len(cols), sharey=True)
    for i, scaling in enumerate(rows):
        for j, variant in enumerate(cols):
            ax = axes[i, j]
            of_variant = curvature[curvature["variant"] == variant]
            sub = of_variant[of_variant["scaling"] == scaling]
            second = of_variant[of_variant["scaling"] == SECOND_JOINT.get(scaling, "")]
            if len(sub):
                label = r"$T=\alpha^k$" if len(second) else None
                _curve_panel(ax, sub, zone, scaling, label, "C0" if len(second) else None)
            if len(second):
                m = small_alpha_exponent_of(second)
                label = r"$T=\alpha^m$" if m is None else rf"$T=\alpha^{{{m}}}$ (m)"
                _curve_panel(ax, second, zone, SECOND_JOINT[scaling], label, "C3")
                ax.legend(loc="best")
            ax.axhline(0, color="0.4", lw=0.6)
            if i == 0:
                ax.set_title(variant)
            if j == 0:
                ax.set_ylabel(f"{ROW_LABELS[scaling]}\n{TRACE_RATIO}")
    shaded = (
        f"; dashed, shaded: zone, >= {threshold_label(zone)} x peak" if zone is not None else ""
    )
    fig.suptitle(
        f"{TRACE_RATIO} at initialisation, {pair_title(curvature)} "
        f"(mean, min-max over {seeds_label(curvature)}{shaded})"
    )
    return fig


def _zone_span(z, scales) -> tuple[float, float]:
    """Shaded extent of a zone: its interpolated edges (:func:`goldilocks.zone.edges`),
    or for a zone without width the point's grid cell.

    The edges give a one-grid-point zone its width. Only where both neighbours are NaN
    (no crossing to place) would the span be zero wide (one line); it is then shaded
    over the scales nearer to it than to its neighbours (half a grid step either side,
    in log scale).
    """
    lower, upper = edges(z)
    if not math.isclose(math.log10(lower), math.log10(upper), abs_tol=LOG_TOL):
        return lower, upper
    logs = np.log10(np.unique(np.asarray(scales, float)))
    if len(logs) < 2:
        return 10 ** (math.log10(lower) - 0.25), 10 ** (math.log10(upper) + 0.25)
    centre = math.log10(lower)
    j = int(np.argmin(np.abs(logs - centre)))
    left = logs[j] - logs[j - 1] if j > 0 else logs[1] - logs[0]
    right = logs[j + 1] - logs[j] if j < len(logs) - 1 else logs[-1] - logs[-2]
    return 10 ** (centre - left / 2), 10 ** (centre + right / 2)


@styled("whitegrid")
def figure_3(kl: pd.DataFrame) -> Figure:
    """LayerNorm variants: where the logits stop scaling linearly with alpha.

    Left: ``KL(softmax(alpha f_theta) || softmax(f_{alpha theta}))``, batch mean (values
    below :data:`KL_FLOOR` drawn at it); right: ``||f_{alpha theta} - alpha f_theta||_F /
    ||alpha f_theta||_F`` (below :data:`REL_FLOOR` drawn at it). One line per variant and
    pair, seed mean with min-max band.

    Args:
        kl: ``results/kl_layernorm.parquet`` (or one pair's ``results/kl/`` table).
    """
    fig, axes = new_figure(1, 2, extra_height=1.1)
    kl_label = r"KL$(\mathrm{softmax}(\alpha f_\theta)\,\|\,\mathrm{softmax}(f_{\alpha\theta}))$"
    rel_label = r"$\|f_{\alpha\theta}-\alpha f_\theta\|_F\,/\,\|\alpha f_\theta\|_F$"
    panels = [("kl", kl_label, KL_FLOOR), ("logit_rel_error", rel_label, REL_FLOOR)]
    pairs = kl[["architecture", "dataset"]].drop_duplicates().itertuples(index=False)
    curves = [(a, d, v) for a, d in pairs for v in variants_of(kl)]
    palette = sns.color_palette("deep", len(curves))
    for ax, (column, label, floor) in zip(axes[0], panels, strict=True):
        for color, (arch, data, variant) in zip(palette, curves, strict=True):
            sub = kl[(kl["architecture"] == arch) & (kl["dataset"] == data)]
            sub = sub[sub["variant"] == variant]
            if sub.empty:
                continue
            name = variant if len(curves) <= 2 else f"{arch}/{data} {variant}"
            curve_with_band(ax, sub, column, name, color, x="alpha", floor=floor)
        ax.set_yscale("log")
        ax.set_ylabel(label)
        ax.set_xlabel(range_label(r"weight scale $\alpha$", kl["alpha"]))
        ax.axvline(1.0, color="0.5", lw=0.6, ls=":")
    axes[0, 0].legend(loc="best")
    axes[0, 0].set_title(f"batch mean (values < {KL_FLOOR:g} drawn at it)")
    axes[0, 1].set_title(f"relative deviation of the logits (< {REL_FLOOR:g} drawn at it)")
    batch = int(kl["batch_size"].iloc[0]) if "batch_size" in kl and len(kl) else "?"
    fig.suptitle(
        f"LayerNorm: linear output scaling $f_{{\\alpha\\theta}} = \\alpha f_\\theta$ against the "
        f"actual logits, {pair_title(kl)}\n(float64, {batch} samples, mean, min-max over "
        f"{seeds_label(kl)})"
    )
    return fig


@styled("whitegrid")
def figure_6(curvature: pd.DataFrame, scalings: Sequence[str] | None = None) -> Figure:
    """Hessian, G-term and H-term against the scale, per variant (Vysogorets et al., fig. 2).

    Two rows per scaling: ``Tr/||.||_F`` of ``R^T M R`` and its spectral norm (log axis;
    an exactly zero G-term, from a saturated softmax, leaves a gap), for M = H, G, H - G.
    Columns are the variants; seed mean with min-max band.

    Args:
        curvature: ``results/curvature.parquet`` rows (one pair).
        scalings: which scalings to show (default: those present, alpha, joint,
            joint_residual, temperature; joint_residual panels exist for the variants
            with a small-alpha exponent m).
    """
    present = set(curvature["scaling"])
    order = ("alpha", "joint", "joint_residual", "temperature")
    rows = [s for s in (scalings or order) if s in present]
    cols = variants_of(curvature)
    fig, axes = new_figure(2 * len(rows), len(cols), extra_height=0.8)
    colors = dict(zip(MATRICES, sns.color_palette("deep", 3), strict=True))
    for i, scaling in enumerate(rows):
        for j, variant in enumerate(cols):
            top, bottom = axes[2 * i, j], axes[2 * i + 1, j]
            bottom.sharex(top)  # the same scales; other scalings span other ranges
            top.tick_params(labelbottom=False)
            sub = curvature[(curvature["scaling"] == scaling) & (curvature["variant"] == variant)]
            for m, name in MATRICES.items():
                if f"{m}_trace_ratio" not in sub or sub.empty:
                    continue
                curve_with_band(top, sub, f"{m}_trace_ratio", name, colors[m])
                spectral = sub.assign(
                    **{
                        f"{m}_spectral_norm": sub[f"{m}_spectral_norm"].where(
                            sub[f"{m}_spectral_norm"] > 0
                        )
                    }
                )
                curve_with_band(bottom, spectral, f"{m}_spectral_norm", name, colors[m])
            top.axhline(0, color="0.4", lw=0.6)
            bottom.set_yscale("log")
            if not sub.empty:
                bottom.set_xlabel(range_label(AXIS_SYMBOL[scaling], sub["scale"]))
            elif scaling == "joint_residual":  # only variants with a small-alpha exponent
                top.set_visible(False)
                bottom.set_visible(False)
            if i == 0:
                top.set_title(variant)
        # Row labels on the row's first drawn panel (joint_residual: the first variant with m).
        first = next((j for j in range(len(cols)) if axes[2 * i, j].get_visible()), 0)
        axes[2 * i, first].set_ylabel(f"{ROW_LABELS[scaling]}\n" + r"Tr$/\|\cdot\|_F$")
        axes[2 * i + 1, first].set_ylabel(r"spectral norm $\|\cdot\|_2$")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=3)
    fig.suptitle(
        f"Hessian = G-term + H-term on the projected subspace, {pair_title(curvature)} "
        f"(mean, min-max over {seeds_label(curvature)})"
    )
    return fig
