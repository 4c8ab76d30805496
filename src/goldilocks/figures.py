"""Figures drawn from the aggregated Parquet tables (docs/method.md section 6).

Each ``figure_<n>`` function takes DataFrames (the tables under ``results/``, whole or
filtered to one architecture/dataset pair) and returns a matplotlib ``Figure``, so it
works the same from a notebook and from the workflow (:func:`save`)::

    zone = pd.read_parquet("results/goldilocks_zone.parquet")
    training = pd.read_parquet("results/training.parquet")
    figure_4(training, zone).savefig("fig4.pdf")

| figure | tables | what |
|---|---|---|
| :func:`figure_1` | curvature, zone | ``Tr(H)/||H||_F`` against the scale, zone shaded |
| :func:`figure_2` | training, zone | final train accuracy over ``T x eta0``, zone drawn on |
| :func:`figure_3` | kl_layernorm | LayerNorm variants: KL of linear vs actual alpha scaling |
| :func:`figure_4` | training, zone | alpha scaling: final train (top) / test (bottom) accuracy |
| :func:`figure_5` | training, zone | temperature scaling: final test accuracy |
| :func:`figure_6` | curvature | Hessian, G-term, H-term: ``Tr/||.||_F`` and spectral norm |
| :func:`figure_7` | curvature, training, zone | initial ``Tr(H)/||H||_F`` against best accuracy |

Figures are sized for the full width of a two-column paper (7.2 in, 7-8 pt text) and use
the object-oriented API under a local style (no pyplot state, no global rcParams change).
Lines are seed means with a min-max band over seeds; heatmaps show seed means with one
colour scale per row; log axes name the symbol and the range they span.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

from goldilocks import claims
from goldilocks.claims import LOG_TOL
from goldilocks.io import write_atomic
from goldilocks.tables import final_rows
from goldilocks.variants import variant_names

ROW_LABELS = {
    "alpha": r"weight scale $\alpha$",
    "joint": r"joint: $\alpha$, $T=\alpha^k$",
    "joint_residual": r"joint: $\alpha$, $T=\alpha^{L-\mathcal{L}}$",
    "temperature": r"temperature $T$",
}
AXIS_SYMBOL = {
    "alpha": r"$\alpha$",
    "joint": r"$\alpha$",
    "joint_residual": r"$\alpha$",
    "temperature": r"$T$",
}
#: The joint curve with the small-alpha exponent L - 𝓛, drawn in the joint row of figure 1.
SECOND_JOINT = {"joint": "joint_residual"}
ACCURACY_LABELS = {"train_acc": "final train accuracy", "test_acc": "final test accuracy"}
MATRICES = {"hessian": "Hessian $H$", "gterm": "G-term", "hterm": "H-term"}
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
#: KL values below this (round-off, or exactly 0 at alpha = 1) are drawn at it.
KL_FLOOR = 1e-18
#: Relative logit deviations below this (exactly 0 at alpha = 1) are drawn at it.
REL_FLOOR = 1e-12
#: Tr(H)/‖H‖_F typeset for titles and labels (mathtext).
TRACE_RATIO = r"Tr$(H)/\|H\|_F$"
#: Most tick labels on a heatmap axis (cell centres, thinned evenly).
MAX_TICKS = 3


def _styled(style: str) -> Callable:
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


def _variants(frame: pd.DataFrame) -> list[str]:
    """The variants in ``frame``, in the registry's order (built-ins, then registered
    models' variants in config order); any unregistered one after them, sorted."""
    present = set(frame["variant"])
    known = [v for v in variant_names() if v in present]
    return known + sorted(present - set(known))


def _exponent(value: float) -> str:
    e = round(float(np.log10(value)), 1)
    return f"{e:g}"


def _range_label(symbol: str, values: pd.Series | np.ndarray) -> str:
    """``alpha (log, 10^-3 to 10^3)``: the axis symbol and the range the data span."""
    values = np.asarray(values, float)
    values = values[np.isfinite(values) & (values > 0)]
    if len(values) == 0:
        return f"{symbol} (log scale)"
    lo, hi = _exponent(values.min()), _exponent(values.max())
    span = f"$10^{{{lo}}}$" if lo == hi else f"$10^{{{lo}}}$ to $10^{{{hi}}}$"
    return f"{symbol} (log, {span})"


def _title(frame: pd.DataFrame) -> str:
    pairs = frame[["architecture", "dataset"]].drop_duplicates().itertuples(index=False)
    return ", ".join(f"{a} on {d}" for a, d in pairs)


def _seeds(frame: pd.DataFrame) -> str:
    n = frame["seed"].nunique()
    return f"{n} seed{'s' * (n != 1)}"


def _figure(
    rows: int, cols: int, extra_height: float = 0.55, **subplots
) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(WIDTH, PANEL_HEIGHT * rows + extra_height), layout="constrained")
    return fig, fig.subplots(rows, cols, squeeze=False, **subplots)


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


def _zone_row(zone: pd.DataFrame | None, frame: pd.DataFrame, variant: str, scaling: str):
    """The zone of ``variant``/``scaling`` for the pair of ``frame``, or None."""
    if zone is None or zone.empty:
        return None
    keys = frame[["architecture", "dataset"]].drop_duplicates()
    if len(keys) != 1:
        return None
    arch, data = keys.iloc[0]
    hit = zone[
        (zone["architecture"] == arch)
        & (zone["dataset"] == data)
        & (zone["variant"] == variant)
        & (zone["scaling"] == scaling)
    ]
    if hit.empty or math.isnan(hit.iloc[0]["lower"]):
        return None
    return hit.iloc[0]


def _threshold(zone: pd.DataFrame | None) -> str:
    if zone is None or "threshold" not in zone or zone.empty:
        return "threshold"
    return f"{zone['threshold'].iloc[0]:g}"


def _curve_panel(ax, sub: pd.DataFrame, zone, scaling: str, label=None, color=None) -> None:
    """One figure-1 curve: seed-mean Tr(H)/‖H‖_F with its band and its zone shaded."""
    curve_with_band(ax, sub, "hessian_trace_ratio", label, color)
    ax.set_xlabel(_range_label(AXIS_SYMBOL[scaling], sub["scale"]))
    z = _zone_row(zone, sub, sub["variant"].iloc[0], scaling)
    if z is not None:
        ax.axvspan(*_zone_span(z, sub["scale"]), color=color or "gold", alpha=0.3, lw=0)
        for bound in (z["lower"], z["upper"]):
            ax.axvline(bound, color=color or "darkgoldenrod", ls="--", lw=0.8)


@_styled("whitegrid")
def figure_1(curvature: pd.DataFrame, zone: pd.DataFrame | None = None) -> Figure:
    """Tr/||H||_F against the scale: rows alpha / joint / temperature, columns variants.

    With ``zone`` (``results/goldilocks_zone.parquet``) the Goldilocks zone is shaded. A
    variant with ``joint_residual`` cells (T = alpha^(L-𝓛), paper Appendix D) gets that
    curve as a second one in its joint panel.
    """
    rows = [s for s in ("alpha", "joint", "temperature") if s in set(curvature["scaling"])]
    cols = _variants(curvature)
    fig, axes = _figure(len(rows), len(cols), sharey=True)
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
                label = r"$T=\alpha^{L-\mathcal{L}}$"
                _curve_panel(ax, second, zone, SECOND_JOINT[scaling], label, "C3")
                ax.legend(loc="best")
            ax.axhline(0, color="0.4", lw=0.6)
            if i == 0:
                ax.set_title(variant)
            if j == 0:
                ax.set_ylabel(f"{ROW_LABELS[scaling]}\n{TRACE_RATIO}")
    shaded = f"; dashed, shaded: zone, >= {_threshold(zone)} x peak" if zone is not None else ""
    fig.suptitle(
        f"{TRACE_RATIO} at initialisation, {_title(curvature)} "
        f"(mean, min-max over {_seeds(curvature)}{shaded})"
    )
    return fig


def _zone_span(z, scales) -> tuple[float, float]:
    """Shaded extent of a zone: its bounds, or for a one-point zone the point's grid cell.

    A zone of a single grid scale would be a zero-width span (one line); it is shaded
    over the scales nearer to it than to its neighbours (half a grid step either side,
    in log scale), the cell a trained scale is matched to.
    """
    lower, upper = float(z["lower"]), float(z["upper"])
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


def _grid_ticks(axis, values: np.ndarray) -> None:
    """Ticks at the heatmap's cell centres (the grid values), at most :data:`MAX_TICKS`.

    Log locators put decade ticks wherever they fall, also beyond a grid of non-decade
    points; cell centres keep every label inside the grid and on a drawn cell.
    """
    values = np.sort(np.asarray(values, float))
    step = max(1, math.ceil((len(values) - 1) / (MAX_TICKS - 1)))
    shown = values[::step]
    axis.set_major_locator(FixedLocator(shown))
    axis.set_major_formatter(FixedFormatter([f"$10^{{{_exponent(v)}}}$" for v in shown]))
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
        for bound, side in ((zone["lower"], "left"), (zone["upper"], "right")):
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


@_styled("white")
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
    final = final_rows(training[training["scaling"] == scaling])
    if final.empty:
        raise ValueError(f"no training cells with scaling {scaling!r} to draw")
    cols = _variants(final)
    # Variants sweep different ranges (T up to 10^(3L)): x is shared down a column only.
    fig, axes = _figure(len(columns), len(cols), extra_height=0.7, sharex="col", sharey=True)
    lrs = final["lr_base"]
    for i, column in enumerate(columns):
        norm = _row_norm(final, column)
        mesh = None
        for j, variant in enumerate(cols):
            ax = axes[i, j]
            sub = final[final["variant"] == variant]
            mesh = accuracy_heatmap(ax, sub, column, norm, _zone_row(zone, sub, variant, scaling))
            if i == 0:
                ax.set_title(variant)
            if i == len(columns) - 1:
                ax.set_xlabel(_range_label(AXIS_SYMBOL[scaling], sub["scale"]))
            if j == 0:
                ax.set_ylabel(_range_label(r"$\eta_0$", lrs))
        fig.colorbar(mesh, ax=axes[i, :].tolist(), label=ACCURACY_LABELS[column], shrink=0.9)
    epochs = int(training["epoch"].max())
    fig.suptitle(
        f"Full-batch GD, {epochs} epochs, {scaling} scaling, {_title(training)}, mean over "
        f"{_seeds(final)}\nwhite dashed: Goldilocks zone ({TRACE_RATIO} $\\geq$ "
        f"{_threshold(zone)} x peak); red x: diverged; grey: no value"
    )
    return fig


def figure_2(training: pd.DataFrame, zone: pd.DataFrame | None = None) -> Figure:
    """Final train accuracy over T x eta0, one panel per variant, temperature zone drawn on."""
    return figure_heatmaps(training, zone, "temperature", ["train_acc"])


@_styled("whitegrid")
def figure_3(kl: pd.DataFrame) -> Figure:
    """LayerNorm variants: where the logits stop scaling linearly with alpha.

    Left: ``KL(softmax(alpha f_theta) || softmax(f_{alpha theta}))``, batch mean (values
    below :data:`KL_FLOOR` drawn at it); right: ``||f_{alpha theta} - alpha f_theta||_F /
    ||alpha f_theta||_F`` (below :data:`REL_FLOOR` drawn at it). One line per variant and
    pair, seed mean with min-max band.

    Args:
        kl: ``results/kl_layernorm.parquet`` (or one pair's ``results/kl/`` table).
    """
    fig, axes = _figure(1, 2, extra_height=1.1)
    kl_label = r"KL$(\mathrm{softmax}(\alpha f_\theta)\,\|\,\mathrm{softmax}(f_{\alpha\theta}))$"
    rel_label = r"$\|f_{\alpha\theta}-\alpha f_\theta\|_F\,/\,\|\alpha f_\theta\|_F$"
    panels = [("kl", kl_label, KL_FLOOR), ("logit_rel_error", rel_label, REL_FLOOR)]
    pairs = kl[["architecture", "dataset"]].drop_duplicates().itertuples(index=False)
    curves = [(a, d, v) for a, d in pairs for v in _variants(kl)]
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
        ax.set_xlabel(_range_label(r"weight scale $\alpha$", kl["alpha"]))
        ax.axvline(1.0, color="0.5", lw=0.6, ls=":")
    axes[0, 0].legend(loc="best")
    axes[0, 0].set_title(f"batch mean (values < {KL_FLOOR:g} drawn at it)")
    axes[0, 1].set_title(f"relative deviation of the logits (< {REL_FLOOR:g} drawn at it)")
    batch = int(kl["batch_size"].iloc[0]) if "batch_size" in kl and len(kl) else "?"
    fig.suptitle(
        f"LayerNorm: linear output scaling $f_{{\\alpha\\theta}} = \\alpha f_\\theta$ against the "
        f"actual logits, {_title(kl)}\n(float64, {batch} samples, mean, min-max over {_seeds(kl)})"
    )
    return fig


def figure_4(training: pd.DataFrame, zone: pd.DataFrame | None = None) -> Figure:
    """Alpha scaling: final train (top) and test (bottom) accuracy over alpha x eta0."""
    return figure_heatmaps(training, zone, "alpha", ["train_acc", "test_acc"])


def figure_5(training: pd.DataFrame, zone: pd.DataFrame | None = None) -> Figure:
    """Temperature scaling: final test accuracy over T x eta0, zone drawn on."""
    return figure_heatmaps(training, zone, "temperature", ["test_acc"])


@_styled("whitegrid")
def figure_6(curvature: pd.DataFrame, scalings: Sequence[str] | None = None) -> Figure:
    """Hessian, G-term and H-term against the scale, per variant (Vysogorets et al., fig. 2).

    Two rows per scaling: ``Tr/||.||_F`` of ``R^T M R`` and its spectral norm (log axis;
    an exactly zero G-term, from a saturated softmax, leaves a gap), for M = H, G, H - G.
    Columns are the variants; seed mean with min-max band.

    Args:
        curvature: ``results/curvature.parquet`` rows (one pair).
        scalings: which scalings to show (default: those present, alpha, joint,
            joint_residual, temperature; joint_residual panels exist for residual only).
    """
    present = set(curvature["scaling"])
    order = ("alpha", "joint", "joint_residual", "temperature")
    rows = [s for s in (scalings or order) if s in present]
    cols = _variants(curvature)
    fig, axes = _figure(2 * len(rows), len(cols), extra_height=0.8)
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
                bottom.set_xlabel(_range_label(AXIS_SYMBOL[scaling], sub["scale"]))
            elif scaling == "joint_residual":  # defined for the residual variant only
                top.set_visible(False)
                bottom.set_visible(False)
            if i == 0:
                top.set_title(variant)
        # Row labels on the row's first drawn panel (joint_residual: the residual column).
        first = next((j for j in range(len(cols)) if axes[2 * i, j].get_visible()), 0)
        axes[2 * i, first].set_ylabel(f"{ROW_LABELS[scaling]}\n" + r"Tr$/\|\cdot\|_F$")
        axes[2 * i + 1, first].set_ylabel(r"spectral norm $\|\cdot\|_2$")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=3)
    fig.suptitle(
        f"Hessian = G-term + H-term on the projected subspace, {_title(curvature)} "
        f"(mean, min-max over {_seeds(curvature)})"
    )
    return fig


def save(fig: Figure, paths: Sequence[str | Path]) -> None:
    """Write ``fig`` to every path (format from the suffix), via a temporary name."""
    for path in map(Path, paths):
        write_atomic(path, lambda tmp, fmt=path.suffix[1:]: fig.savefig(tmp, format=fmt, dpi=200))


IN_ZONE = "trained scale in the zone"


def _legend_once(fig: Figure, axes: np.ndarray, label: str) -> None:
    """One figure legend entry for ``label``, if any panel drew it."""
    for ax in axes.flat:
        for handle, name in zip(*ax.get_legend_handles_labels(), strict=True):
            if name == label:
                fig.legend([handle], [label], loc="outside lower center")
                return


def _zone_points(z, near: list[float]) -> np.ndarray:
    """Which nearest-curvature scales lie inside the zone row ``z`` (None: none)."""
    if z is None:
        return np.zeros(len(near), bool)
    lo, hi = np.log10(z["lower"]) - LOG_TOL, np.log10(z["upper"]) + LOG_TOL
    return np.array([bool(np.isfinite(n) and lo <= np.log10(n) <= hi) for n in near])


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
    ring = ok & _zone_points(z, near)
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


@_styled("whitegrid")
def figure_7(
    curvature: pd.DataFrame, training: pd.DataFrame, zone: pd.DataFrame | None = None
) -> Figure:
    """Beyond the paper: initial Tr(H)/‖H‖_F against best final train accuracy.

    One point per trained scale, one panel per variant, one row per training scaling
    (temperature, then alpha). x: the seed-mean Tr(H)/‖H‖_F at the curvature grid scale
    nearest the trained scale (same variant and scaling); y: the best final train
    accuracy over eta0, mean over training seeds (a diverged cell counts with its
    epoch-0 accuracy, as in :mod:`goldilocks.claims`); bars: min-max over seeds. Colour:
    log10 of the scale (one colour scale per row); ringed: the nearest curvature scale
    lies in the Goldilocks zone. Trained scales without a finite curvature value are
    counted in the panel's corner.

    Raises:
        ValueError: no training cells.
    """
    final = claims.final_accuracy(training) if len(training) else training
    rows = [s for s in ("temperature", "alpha") if len(final) and s in set(final["scaling"])]
    if not rows:
        raise ValueError("no training cells to draw")
    cols = _variants(final)
    fig, axes = _figure(len(rows), len(cols), extra_height=1.2, sharey=True)
    for i, scaling in enumerate(rows):
        sub_final = final[final["scaling"] == scaling]
        logs = np.log10(sub_final["scale"].to_numpy(float))
        norm = Normalize(logs.min(), logs.max() if logs.max() > logs.min() else logs.min() + 1)
        for j, variant in enumerate(cols):
            ax = axes[i, j]
            best = claims.best_accuracy(sub_final[sub_final["variant"] == variant])
            curv = curvature[(curvature["variant"] == variant) & (curvature["scaling"] == scaling)]
            pair = curv if len(curv) else sub_final[sub_final["variant"] == variant]
            z = _zone_row(zone, pair, variant, scaling) if len(pair) else None
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
        f"Initial curvature against trainability, {_title(final)}\n"
        f"y: best final train accuracy over $\\eta_0 \\in$ {{{eta}}} after "
        f"{int(training['epoch'].max())} epochs, mean (bars: min-max) over {n_seeds} training "
        f"seed{'s' * (n_seeds != 1)}\nx: {TRACE_RATIO} at the nearest curvature scale, mean "
        f"(bars: min-max) over {_seeds(curvature)}; ringed: in the Goldilocks zone "
        f"($\\geq$ {_threshold(zone)} x peak)"
    )
    return fig


FIGURES: dict[int, Callable[..., Figure]] = {
    1: figure_1,
    2: figure_2,
    3: figure_3,
    4: figure_4,
    5: figure_5,
    6: figure_6,
    7: figure_7,
}
