"""Figures drawn from the aggregated Parquet tables (SPEC section 6).

Each ``figure_<n>`` function takes DataFrames and returns a matplotlib ``Figure``, so
it works the same from a notebook and from the workflow (:func:`save`). Figures use the
object-oriented API (no pyplot state), which keeps them safe to draw anywhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from goldilocks.architectures import VARIANTS
from goldilocks.io import write_atomic
from goldilocks.zone import goldilocks_zone

ROW_LABELS = {
    "alpha": r"weight scale $\alpha$",
    "joint": r"joint: $\alpha$, $T=\alpha^k$",
    "temperature": r"temperature $T$",
}
AXIS_SYMBOL = {"alpha": r"$\alpha$", "joint": r"$\alpha$", "temperature": r"$T$"}
PANEL = 2.3  # inches per panel: five columns fit a two-column paper page at ~11.5 in


def _variants(frame: pd.DataFrame) -> list[str]:
    present = set(frame["variant"])
    return [v for v in VARIANTS if v in present]


def _range_label(symbol: str, values: pd.Series) -> str:
    lo, hi = np.log10(values.min()), np.log10(values.max())
    return f"{symbol} (log scale, $10^{{{lo:.0f}}}$ to $10^{{{hi:.0f}}}$)"


def _title(frame: pd.DataFrame) -> str:
    pairs = frame[["architecture", "dataset"]].drop_duplicates().itertuples(index=False)
    return ", ".join(f"{a} on {d}" for a, d in pairs)


def curve_with_band(
    ax, frame: pd.DataFrame, column: str, label: str | None = None, color=None
) -> None:
    """Seed mean of ``column`` against ``scale`` with a min-max band over seeds."""
    stats = frame.groupby("scale")[column].agg(["mean", "min", "max"]).sort_index()
    line = ax.plot(stats.index, stats["mean"], marker="o", ms=2.5, lw=1.2, label=label, color=color)
    ax.fill_between(
        stats.index, stats["min"], stats["max"], alpha=0.25, lw=0, color=line[0].get_color()
    )
    ax.set_xscale("log")


def figure_1(curvature: pd.DataFrame) -> Figure:
    """Tr/||H||_F against the scale: rows alpha / joint / temperature, columns variants."""
    sns.set_theme(style="whitegrid", context="paper")
    rows = [s for s in ("alpha", "joint", "temperature") if s in set(curvature["scaling"])]
    cols = _variants(curvature)
    fig = Figure(figsize=(PANEL * len(cols), 1.9 * len(rows) + 0.6), layout="constrained")
    axes = fig.subplots(len(rows), len(cols), squeeze=False, sharey=True)
    for i, scaling in enumerate(rows):
        for j, variant in enumerate(cols):
            ax = axes[i, j]
            sub = curvature[(curvature["scaling"] == scaling) & (curvature["variant"] == variant)]
            if len(sub):
                curve_with_band(ax, sub, "hessian_trace_ratio")
                ax.set_xlabel(_range_label(AXIS_SYMBOL[scaling], sub["scale"]), fontsize=7)
            ax.axhline(0, color="0.4", lw=0.6)
            if i == 0:
                ax.set_title(variant)
            if j == 0:
                ax.set_ylabel(f"{ROW_LABELS[scaling]}\n" + r"Tr$(H)/\|H\|_F$")
    seeds = curvature["seed"].nunique()
    fig.suptitle(
        f"Excess of positive curvature at initialisation, {_title(curvature)} "
        f"(mean and min-max over {seeds} seed{'s' * (seeds > 1)})"
    )
    return fig


def _edges(values: np.ndarray) -> np.ndarray:
    """Cell edges in log space around sorted grid values."""
    logs = np.log10(values)
    if len(logs) == 1:
        return 10 ** np.array([logs[0] - 0.5, logs[0] + 0.5])
    mids = (logs[1:] + logs[:-1]) / 2
    return 10 ** np.concatenate([[2 * logs[0] - mids[0]], mids, [2 * logs[-1] - mids[-1]]])


def final_rows(training: pd.DataFrame) -> pd.DataFrame:
    """The last logged row of every training cell (a diverged cell's divergence row)."""
    keys = ["architecture", "dataset", "variant", "scaling", "scale", "lr_base", "seed"]
    return training.sort_values("epoch").groupby(keys, as_index=False).tail(1)


def accuracy_heatmap(ax, final: pd.DataFrame, column: str, norm: Normalize, zone: pd.Series | None):
    """Seed-mean ``column`` over scale x lr_base; diverged cells crossed; zone lines."""
    table = final.groupby(["lr_base", "scale"]).agg(
        value=(column, "mean"), diverged=("diverged", "any")
    )
    grid = table["value"].unstack("scale").sort_index().sort_index(axis=1)
    xs, ys = grid.columns.to_numpy(float), grid.index.to_numpy(float)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.82")  # diverged: grey
    mesh = ax.pcolormesh(_edges(xs), _edges(ys), grid.to_numpy(float), norm=norm, cmap=cmap)
    diverged = table[table["diverged"]].reset_index()
    ax.scatter(
        diverged["scale"],
        diverged["lr_base"],
        marker="x",
        color="red",
        s=14,
        lw=0.8,
        label="diverged",
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    if zone is not None and not math.isnan(zone["lower"]):
        for bound in (zone["lower"], zone["upper"]):
            ax.axvline(bound, color="white", ls="--", lw=1.2)
    return mesh


def figure_heatmaps(
    training: pd.DataFrame,
    curvature: pd.DataFrame,
    scaling: str,
    columns: Sequence[str],
    threshold: float = 0.5,
) -> Figure:
    """Final accuracy heatmaps over scale x eta0, one panel per variant, zone drawn on."""
    sns.set_theme(style="white", context="paper")
    final = final_rows(training[training["scaling"] == scaling])
    zones = goldilocks_zone(curvature, threshold).set_index(["variant", "scaling"])
    cols = _variants(final)
    fig = Figure(figsize=(PANEL * len(cols) + 0.8, 2.1 * len(columns) + 0.6), layout="constrained")
    # Variants sweep different ranges (T up to 10^(3L)): x is shared down a column only.
    axes = fig.subplots(len(columns), len(cols), squeeze=False, sharex="col", sharey=True)
    labels = {"train_acc": "final train accuracy", "test_acc": "final test accuracy"}
    for i, column in enumerate(columns):
        norm = Normalize(0.0, 1.0)
        mesh = None
        for j, variant in enumerate(cols):
            ax = axes[i, j]
            sub = final[final["variant"] == variant]
            zone = zones.loc[(variant, scaling)] if (variant, scaling) in zones.index else None
            mesh = accuracy_heatmap(ax, sub, column, norm, zone)
            if i == 0:
                ax.set_title(variant)
            if i == len(columns) - 1:
                ax.set_xlabel(_range_label(AXIS_SYMBOL[scaling], sub["scale"]), fontsize=7)
            if j == 0:
                ax.set_ylabel(r"base learning rate $\eta_0$")
        fig.colorbar(mesh, ax=axes[i, :].tolist(), label=labels[column], shrink=0.9)
    epochs = int(training["epoch"].max())
    fig.suptitle(
        f"Full-batch GD, {epochs} epochs, {scaling} scaling, {_title(training)}: "
        f"dashed = Goldilocks zone (Tr/||H||_F >= {threshold:g} x peak), grey x = diverged"
    )
    return fig


def figure_2(training: pd.DataFrame, curvature: pd.DataFrame, threshold: float = 0.5) -> Figure:
    """Final train accuracy, T x eta0, per variant, with the temperature zone."""
    return figure_heatmaps(training, curvature, "temperature", ["train_acc"], threshold)


def save(fig: Figure, paths: Sequence[str | Path]) -> None:
    """Write ``fig`` to every path (format from the suffix), via a temporary name."""
    for path in map(Path, paths):
        write_atomic(path, lambda tmp, fmt=path.suffix[1:]: fig.savefig(tmp, format=fmt, dpi=200))
