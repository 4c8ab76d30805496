"""Scatter: initial curvature against trainability (figure 7)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from goldilocks import claims
from goldilocks.figures.style import (
    AXIS_SYMBOL,
    ROW_LABELS,
    TRACE_RATIO,
    new_figure,
    pair_title,
    seeds_label,
    styled,
    threshold_label,
    variants_of,
    zone_of,
)
from goldilocks.tables import final_accuracy
from goldilocks.zone import contains

IN_ZONE = "trained scale in the zone"


def _legend_once(fig: Figure, axes: np.ndarray, label: str) -> None:
    """One figure legend entry for ``label``, if any panel drew it."""
    for ax in axes.flat:
        for handle, name in zip(*ax.get_legend_handles_labels(), strict=True):
            if name == label:
                fig.legend([handle], [label], loc="outside lower center")
                return


def _zone_points(z, scales) -> np.ndarray:
    """Which trained ``scales`` lie inside the zone row ``z``'s interpolated edges
    (:func:`goldilocks.zone.contains`; None: none), as the claims judge them."""
    mask = None if z is None else contains(z, scales)
    return np.zeros(len(list(scales)), bool) if mask is None else mask


def _curvature_vs_accuracy(ax, best: pd.DataFrame, curv: pd.DataFrame, z, norm: Normalize):
    """One panel of figure 7: returns the scatter (for the colour bar)."""
    stats = curv.groupby("scale")[claims.RATIO].agg(["mean", "min", "max"])
    near = [claims.nearest_grid(stats.index, s) for s in best["scale"]]

    def at(column: str) -> np.ndarray:
        return np.array([stats.loc[n, column] if np.isfinite(n) else np.nan for n in near])

    x, xlo, xhi = at("mean"), at("min"), at("max")
    y, ylo, yhi = (best[c].to_numpy(float) for c in ("mean", "min", "max"))
    ok = np.isfinite(x) & np.isfinite(y)
    xerr, yerr = [x[ok] - xlo[ok], xhi[ok] - x[ok]], [y[ok] - ylo[ok], yhi[ok] - y[ok]]
    ax.errorbar(x[ok], y[ok], xerr=xerr, yerr=yerr, fmt="none", ecolor="0.6", lw=0.6, zorder=2)
    colour = np.log10(best["scale"].to_numpy(float))[ok]
    points = ax.scatter(x[ok], y[ok], c=colour, cmap="viridis", norm=norm, s=16, zorder=3)
    ring = ok & _zone_points(z, best["scale"])
    if ring.any():
        ax.scatter(
            *(x[ring], y[ring]),
            **dict(s=70, facecolors="none", edgecolors="darkgoldenrod", linewidths=1.1),
            **dict(zorder=4, label=IN_ZONE),
        )
    ax.axvline(0, color="0.4", lw=0.6)
    ax.margins(0.12)  # rings at the extremes stay inside the panel
    if missing := int((~ok).sum()):
        ax.annotate(
            f"{missing} scale(s) without\na finite value",
            **dict(xy=(0.98, 0.03), xycoords="axes fraction", ha="right", va="bottom"),
            **dict(fontsize=5, color="0.3"),
        )
    return points


@styled("whitegrid")
def figure_7(
    curvature: pd.DataFrame, training: pd.DataFrame, zone: pd.DataFrame | None = None
) -> Figure:
    """Beyond the paper: initial Tr(H)/‖H‖_F against best final train accuracy.

    One point per trained scale, one panel per variant, one row per training scaling
    (temperature, then alpha). x: the seed-mean Tr(H)/‖H‖_F at the curvature grid scale
    nearest the trained scale (same variant and scaling); y: the best final train
    accuracy over eta0, mean over training seeds (a diverged cell counts with its
    epoch-0 accuracy, as in :mod:`goldilocks.claims`); bars: min-max over seeds. Colour:
    log10 of the scale (one colour scale per row); ringed: the trained scale lies inside
    the Goldilocks zone's interpolated edges (as the claims judge it). Trained scales
    without a finite curvature value are counted in the panel's corner.

    Raises:
        ValueError: no training cells.
    """
    final = final_accuracy(training, diverged="initial") if len(training) else training
    rows = [s for s in ("temperature", "alpha") if len(final) and s in set(final["scaling"])]
    if not rows:
        raise ValueError("no training cells to draw")
    cols = variants_of(final)
    fig, axes = new_figure(len(rows), len(cols), extra_height=1.2, sharey=True)
    for i, scaling in enumerate(rows):
        sub_final = final[final["scaling"] == scaling]
        logs = np.log10(sub_final["scale"].to_numpy(float))
        norm = Normalize(logs.min(), logs.max() if logs.max() > logs.min() else logs.min() + 1)
        for j, variant in enumerate(cols):
            ax = axes[i, j]
            best = claims.best_accuracy(sub_final[sub_final["variant"] == variant])
            curv = curvature[(curvature["variant"] == variant) & (curvature["scaling"] == scaling)]
            pair = curv if len(curv) else sub_final[sub_final["variant"] == variant]
            z = zone_of(zone, pair, variant, scaling) if len(pair) else None
            points = _curvature_vs_accuracy(ax, best, curv, z, norm)
            ax.set_xlabel(f"initial {TRACE_RATIO}")
            if i == 0:
                ax.set_title(variant)
            if j == 0:
                ax.set_ylabel(f"{ROW_LABELS[scaling]}\nbest final train accuracy")
        symbol = AXIS_SYMBOL[scaling].strip("$")
        fig.colorbar(points, ax=axes[i, :].tolist(), label=rf"$\log_{{10}} {symbol}$", shrink=0.9)
    _legend_once(fig, axes, IN_ZONE)
    eta = ", ".join(f"{v:g}" for v in sorted(set(final["lr_base"])))
    n_seeds = final["seed"].nunique()
    fig.suptitle(
        f"Initial curvature against trainability, {pair_title(final)}\n"
        f"y: best final train accuracy over $\\eta_0 \\in$ {{{eta}}} after "
        f"{int(training['epoch'].max())} epochs, mean (bars: min-max) over {n_seeds} training "
        f"seed{'s' * (n_seeds != 1)}\nx: {TRACE_RATIO} at the nearest curvature scale, mean "
        f"(bars: min-max) over {seeds_label(curvature)}; ringed: in the Goldilocks zone "
        f"($\\geq$ {threshold_label(zone)} x peak)"
    )
    return fig
