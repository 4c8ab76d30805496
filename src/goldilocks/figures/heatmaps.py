"""Heatmaps of final accuracy over scale x eta0 (figures 2, 4 and 5)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

from goldilocks.figures import style
from goldilocks.tables import final_accuracy
from goldilocks.zone import edges

ACCURACY_LABELS = {"train_acc": "final train accuracy", "test_acc": "final test accuracy"}


#: Most tick labels on a heatmap axis (cell centres, thinned evenly).
MAX_TICKS = 3


def _grid_ticks(axis, values: np.ndarray) -> None:
    """Ticks at the heatmap's cell centres (the grid values), at most :data:`MAX_TICKS`.

    Log locators put decade ticks wherever they fall, also beyond a grid of non-decade
    points; cell centres keep every label inside the grid and on a drawn cell.
    """
    values = np.sort(np.asarray(values, float))
    step = max(1, math.ceil((len(values) - 1) / (MAX_TICKS - 1)))
    shown = values[::step]
    axis.set_major_locator(FixedLocator(shown))
    axis.set_major_formatter(FixedFormatter([f"$10^{{{style.exponent(v)}}}$" for v in shown]))
    axis.set_minor_locator(NullLocator())


def _edges(values: np.ndarray) -> np.ndarray:
    """Cell edges in log space around sorted grid values (half a decade for one value)."""
    logs = np.log10(values)
    if len(logs) == 1:
        return 10 ** np.array([logs[0] - 0.5, logs[0] + 0.5])
    mids = (logs[1:] + logs[:-1]) / 2
    return 10 ** np.concatenate([[2 * logs[0] - mids[0]], mids, [2 * logs[-1] - mids[-1]]])


def _row_norm(final: pd.DataFrame, column: str) -> Normalize:
    """One colour scale for a heatmap row: the range of its seed-mean values."""
    means = final.groupby(["variant", "lr_base", "scale"])[column].mean().to_numpy(float)
    means = means[np.isfinite(means)]
    if len(means) == 0:
        return Normalize(0.0, 1.0)
    lo, hi = float(means.min()), float(means.max())
    if hi - lo < 0.02:
        lo, hi = lo - 0.01, hi + 0.01
    return Normalize(lo, hi)


def accuracy_heatmap(ax, final: pd.DataFrame, column: str, norm: Normalize, zone=None):
    """Seed-mean ``column`` over scale x lr_base; NaN grey, diverged crossed, zone dashed."""
    table = final.groupby(["lr_base", "scale"]).agg(
        value=(column, "mean"), diverged=("diverged", "any")
    )
    grid = table["value"].unstack("scale").sort_index().sort_index(axis=1)
    xs, ys = grid.columns.to_numpy(float), grid.index.to_numpy(float)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.82")  # NaN: grey
    values = np.ma.masked_invalid(grid.to_numpy(float))
    mesh = ax.pcolormesh(_edges(xs), _edges(ys), values, norm=norm, cmap=cmap)
    diverged = table[table["diverged"].astype(bool)].reset_index()
    ax.scatter(diverged["scale"], diverged["lr_base"], marker="x", color="red", s=12, lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    x_edges = _edges(xs)
    ax.set_xlim(x_edges[0], x_edges[-1])  # a zone bound far outside must not move the axis
    _grid_ticks(ax.xaxis, xs)
    _grid_ticks(ax.yaxis, ys)
    if zone is not None:
        for bound, side in zip(edges(zone), ("left", "right"), strict=True):
            if not np.isfinite(bound):
                continue
            if x_edges[0] <= bound <= x_edges[-1]:
                ax.axvline(bound, color="white", ls="--", lw=1.1)
            else:  # the bound lies beyond the trained range: say so at that edge
                outside = "left" if bound < x_edges[0] else "right"
                ax.annotate(
                    f"zone {side} bound\n{'<' if outside == 'left' else '>'} axis",
                    xy=(0.02 if outside == "left" else 0.98, 0.97),
                    xycoords="axes fraction",
                    ha=outside,
                    va="top",
                    fontsize=5,
                    color="white",
                )
    return mesh


@style.styled("white")
def figure_heatmaps(
    training: pd.DataFrame,
    zone: pd.DataFrame | None,
    scaling: str,
    columns: Sequence[str],
) -> Figure:
    """Final accuracy heatmaps over scale x eta0: a row per column, a panel per variant.

    Args:
        training: ``results/training.parquet`` rows of one pair (all logged epochs).
        zone: ``results/goldilocks_zone.parquet`` (or None: no boundary drawn).
        scaling: ``alpha`` or ``temperature``: which training cells to show.
        columns: accuracies, one heatmap row each (``train_acc``, ``test_acc``).

    Raises:
        ValueError: no training rows with this scaling.
    """
    final = final_accuracy(training[training["scaling"] == scaling], diverged="nan")
    if final.empty:
        raise ValueError(f"no training cells with scaling {scaling!r} to draw")
    cols = style.variants_of(final)
    # Variants sweep different ranges (T up to 10^(3L)): x is shared down a column only.
    fig, axes = style.new_figure(
        len(columns), len(cols), extra_height=0.7, sharex="col", sharey=True
    )
    lrs = final["lr_base"]
    for i, column in enumerate(columns):
        norm = _row_norm(final, column)
        mesh = None
        for j, variant in enumerate(cols):
            ax = axes[i, j]
            sub = final[final["variant"] == variant]
            z = style.zone_of(zone, sub, variant, scaling)
            mesh = accuracy_heatmap(ax, sub, column, norm, z)
            if i == 0:
                ax.set_title(variant)
            if i == len(columns) - 1:
                ax.set_xlabel(style.range_label(style.AXIS_SYMBOL[scaling], sub["scale"]))
            if j == 0:
                ax.set_ylabel(style.range_label(r"$\eta_0$", lrs))
        fig.colorbar(mesh, ax=axes[i, :].tolist(), label=ACCURACY_LABELS[column], shrink=0.9)
    epochs = int(training["epoch"].max())
    fig.suptitle(
        f"Full-batch GD, {epochs} epochs, {scaling} scaling, {style.pair_title(training)}, "
        f"mean over {style.seeds_label(final)}\nwhite dashed: Goldilocks zone "
        f"({style.TRACE_RATIO} $\\geq$ {style.threshold_label(zone)} x peak); red x: diverged; "
        "grey: no value"
    )
    return fig


def figure_2(training: pd.DataFrame, zone: pd.DataFrame | None = None) -> Figure:
    """Final train accuracy over T x eta0, one panel per variant, temperature zone drawn on."""
    return figure_heatmaps(training, zone, "temperature", ["train_acc"])


def figure_4(training: pd.DataFrame, zone: pd.DataFrame | None = None) -> Figure:
    """Alpha scaling: final train (top) and test (bottom) accuracy over alpha x eta0."""
    return figure_heatmaps(training, zone, "alpha", ["train_acc", "test_acc"])


def figure_5(training: pd.DataFrame, zone: pd.DataFrame | None = None) -> Figure:
    """Temperature scaling: final test accuracy over T x eta0, zone drawn on."""
    return figure_heatmaps(training, zone, "temperature", ["test_acc"])
