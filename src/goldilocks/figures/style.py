"""Shared style of the figures: size, fonts, labels, the pair's zone, saving."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from goldilocks.io import write_atomic
from goldilocks.variants import variant_names
from goldilocks.zone import bounds, zone_row

ROW_LABELS = {
    "alpha": r"weight scale $\alpha$",
    "joint": r"joint: $\alpha$, $T=\alpha^k$",
    "joint_residual": r"joint: $\alpha$, $T=\alpha^m$ (small $\alpha$)",
    "temperature": r"temperature $T$",
}


AXIS_SYMBOL = {
    "alpha": r"$\alpha$",
    "joint": r"$\alpha$",
    "joint_residual": r"$\alpha$",
    "temperature": r"$T$",
}


WIDTH = 7.2  # inches: the full text width of a two-column paper


PANEL_HEIGHT = 1.45


FONT = {
    "font.size": 7,
    "axes.titlesize": 7.5,
    "axes.labelsize": 7,
    "xtick.labelsize": 6,
    "ytick.labelsize": 6,
    "legend.fontsize": 6.5,
    "figure.titlesize": 8,
}


#: Tr(H)/‖H‖_F typeset for titles and labels (mathtext).
TRACE_RATIO = r"Tr$(H)/\|H\|_F$"


def styled(style: str) -> Callable:
    """Draw the decorated figure under a seaborn style, restoring rcParams afterwards."""

    def decorate(draw: Callable[..., Figure]) -> Callable[..., Figure]:
        @functools.wraps(draw)
        def wrapper(*args, **kwargs) -> Figure:
            rc = {**sns.axes_style(style), **sns.plotting_context("paper"), **FONT}
            with matplotlib.rc_context(rc):
                fig = draw(*args, **kwargs)
                for ax in fig.axes:  # ticks are created lazily: fix their size now
                    ax.tick_params(labelsize=FONT["xtick.labelsize"])
            return fig

        return wrapper

    return decorate


def variants_of(frame: pd.DataFrame) -> list[str]:
    """The variants in ``frame``, in the registry's order (built-ins, then registered
    models' variants in config order); any unregistered one after them, sorted."""
    present = set(frame["variant"])
    known = [v for v in variant_names() if v in present]
    return known + sorted(present - set(known))


def exponent(value: float) -> str:
    e = round(float(np.log10(value)), 1)
    return f"{e:g}"


def range_label(symbol: str, values: pd.Series | np.ndarray) -> str:
    """``alpha (log, 10^-3 to 10^3)``: the axis symbol and the range the data span."""
    values = np.asarray(values, float)
    values = values[np.isfinite(values) & (values > 0)]
    if len(values) == 0:
        return f"{symbol} (log scale)"
    lo, hi = exponent(values.min()), exponent(values.max())
    span = f"$10^{{{lo}}}$" if lo == hi else f"$10^{{{lo}}}$ to $10^{{{hi}}}$"
    return f"{symbol} (log, {span})"


def pair_title(frame: pd.DataFrame) -> str:
    pairs = frame[["architecture", "dataset"]].drop_duplicates().itertuples(index=False)
    return ", ".join(f"{a} on {d}" for a, d in pairs)


def seeds_label(frame: pd.DataFrame) -> str:
    n = frame["seed"].nunique()
    return f"{n} seed{'s' * (n != 1)}"


def new_figure(
    rows: int, cols: int, extra_height: float = 0.55, **subplots
) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(WIDTH, PANEL_HEIGHT * rows + extra_height), layout="constrained")
    return fig, fig.subplots(rows, cols, squeeze=False, **subplots)


def zone_of(zone: pd.DataFrame | None, frame: pd.DataFrame, variant: str, scaling: str):
    """The zone row of ``variant``/``scaling`` for the one pair of ``frame``
    (:func:`goldilocks.zone.zone_row`), or None: no zone table, several pairs, no row, or
    a curve without a zone."""
    if zone is None or zone.empty:
        return None
    keys = frame[["architecture", "dataset"]].drop_duplicates()
    if len(keys) != 1:
        return None
    row, _ = zone_row(zone, variant, scaling, pair=tuple(keys.iloc[0]))
    return row if bounds(row) is not None else None


def threshold_label(zone: pd.DataFrame | None) -> str:
    if zone is None or "threshold" not in zone or zone.empty:
        return "threshold"
    return f"{zone['threshold'].iloc[0]:g}"


def save(fig: Figure, paths: Sequence[str | Path]) -> None:
    """Write ``fig`` to every path (format from the suffix), via a temporary name."""
    for path in map(Path, paths):
        write_atomic(path, lambda tmp, fmt=path.suffix[1:]: fig.savefig(tmp, format=fmt, dpi=200))
