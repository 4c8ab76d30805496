"""Every figure renders from tiny hand-made tables, edge cases included."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection, QuadMesh

from goldilocks import claims, figures
from goldilocks.zone import goldilocks_zone

PAIR = {"architecture": "lenet300100", "dataset": "synthetic"}
VARIANTS = ["homogeneous", "layernorm"]
SCALES = [1e-2, 1e-1, 1.0, 1e1, 1e2]


def curvature_table(scales=SCALES, seeds=(0, 1)) -> pd.DataFrame:
    rows = []
    for variant, scaling, scale, seed in itertools.product(
        VARIANTS, ("alpha", "temperature", "joint"), scales, seeds
    ):
        bump = float(np.exp(-(np.log10(scale) ** 2)))
        row = {**PAIR, "variant": variant, "scaling": scaling, "scale": scale, "seed": seed}
        for m, sign in (("hessian", 1.0), ("gterm", 1.0), ("hterm", -0.5)):
            row[f"{m}_trace_ratio"] = sign * bump + 0.01 * seed
            row[f"{m}_spectral_norm"] = scale**-2
        rows.append(row)
    frame = pd.DataFrame(rows)
    # A saturated cell: every ratio NaN, G exactly zero.
    saturated = (frame["scale"] == scales[-1]) & (frame["scaling"] == "temperature")
    frame.loc[saturated, [c for c in frame if c.endswith("trace_ratio")]] = np.nan
    frame.loc[saturated, "gterm_spectral_norm"] = 0.0
    return frame


def training_table(scales=SCALES[1:4], lrs=(0.01, 0.1), seeds=(0, 1)) -> pd.DataFrame:
    rows = []
    for variant, scaling, scale, lr, seed in itertools.product(
        VARIANTS, ("alpha", "temperature"), scales, lrs, seeds
    ):
        cell = {**PAIR, "variant": variant, "scaling": scaling, "scale": scale, "lr_base": lr}
        cell["seed"] = seed
        diverged = scale == max(scales) and lr == max(lrs)
        for epoch in (0, 10):
            acc = 0.1 if epoch == 0 else 0.5 + 0.1 * np.log10(scale) + lr
            rows.append(
                {
                    **cell,
                    "epoch": epoch,
                    "train_acc": np.nan if diverged and epoch else acc,
                    "test_acc": np.nan if diverged and epoch else acc - 0.05,
                    "diverged": bool(diverged and epoch),
                }
            )
    return pd.DataFrame(rows)


def kl_table() -> pd.DataFrame:
    rows = []
    for variant, seed, alpha in itertools.product(
        ("layernorm", "combined"), (0, 1), [1e-6, 1e-3, 1.0, 1e3]
    ):
        kl = 0.0 if alpha >= 1 else 1e-7 * alpha
        rows.append(
            {
                **PAIR,
                "variant": variant,
                "seed": seed,
                "alpha": alpha,
                "kl": kl,
                "kl_max": 2 * kl,
                "logit_rel_error": 1.0 if alpha < 1 else 1e-6 * (seed + 1),
                "batch_size": 32,
            }
        )
    return pd.DataFrame(rows)


def render(fig) -> None:
    fig.canvas.draw()  # layout and every artist, as savefig does
    assert fig.get_figwidth() == pytest.approx(figures.WIDTH)


def meshes(fig) -> list[QuadMesh]:
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    return [c for ax in panels for c in ax.collections if isinstance(c, QuadMesh)]


def test_figure_1_curves_and_zone():
    curvature = curvature_table()
    fig = figures.figure_1(curvature, goldilocks_zone(curvature))
    render(fig)
    assert len(fig.axes) == 3 * len(VARIANTS)
    assert "10^{-2}" in fig.axes[0].get_xlabel() and "10^{2}" in fig.axes[0].get_xlabel()


def test_figure_2_and_5_heatmaps_with_diverged_cells():
    training, curvature = training_table(), curvature_table()
    zone = goldilocks_zone(curvature)
    for draw in (figures.figure_2, figures.figure_5):
        fig = draw(training, zone)
        render(fig)
        assert len(meshes(fig)) == len(VARIANTS)
        # The diverged cell is a NaN (grey) value and a red cross.
        assert np.ma.getmaskarray(meshes(fig)[0].get_array()).sum() == 1
        assert sum(len(c.get_offsets()) for ax in fig.axes for c in ax.collections) > len(VARIANTS)


def test_figure_4_one_colour_scale_per_row():
    training = training_table()
    fig = figures.figure_4(training, goldilocks_zone(curvature_table()))
    render(fig)
    rows = [meshes(fig)[: len(VARIANTS)], meshes(fig)[len(VARIANTS) :]]
    for row in rows:
        assert len({(m.norm.vmin, m.norm.vmax) for m in row}) == 1
    assert rows[0][0].norm.vmax != rows[1][0].norm.vmax  # train and test rows differ


def test_heatmaps_single_scale_single_lr_and_all_nan():
    training = training_table(scales=[1.0], lrs=(0.1,), seeds=(0,))
    render(figures.figure_4(training, None))
    training["test_acc"] = np.nan
    render(figures.figure_5(training, goldilocks_zone(curvature_table())))


def test_heatmap_without_the_scaling_says_so():
    training = training_table()
    with pytest.raises(ValueError, match="no training cells with scaling 'alpha'"):
        figures.figure_4(training[training["scaling"] == "temperature"], None)


def test_figure_3_kl_floor_and_bands():
    fig = figures.figure_3(kl_table())
    render(fig)
    kl_axis = fig.axes[0]
    assert kl_axis.get_yscale() == "log"
    curves = [line for line in kl_axis.get_lines() if line.get_marker() == "o"]
    assert len(curves) == 2
    lowest = min(np.min(line.get_ydata()) for line in curves)
    assert lowest == figures.KL_FLOOR  # exact zeros drawn at the floor, not dropped
    assert len(kl_axis.get_legend().get_texts()) == 2


def test_figure_6_three_matrices_with_nan_and_zero():
    curvature = curvature_table()
    fig = figures.figure_6(curvature)
    render(fig)
    assert len(fig.axes) == 2 * 3 * len(VARIANTS)
    assert len(fig.legends[0].get_texts()) == 3
    render(figures.figure_6(curvature, scalings=["temperature"]))


def test_line_figures_with_a_single_scale():
    curvature = curvature_table(scales=[1.0], seeds=(0,))
    render(figures.figure_1(curvature))
    render(figures.figure_6(curvature))
    kl = kl_table()
    render(figures.figure_3(kl[kl["alpha"] == 1e-3]))


def test_save_writes_pdf_and_png(tmp_path):
    fig = figures.figure_1(curvature_table())
    paths = [tmp_path / "f.pdf", tmp_path / "f.png"]
    figures.save(fig, paths)
    assert paths[0].read_bytes()[:4] == b"%PDF"
    assert paths[1].read_bytes()[:4] == b"\x89PNG"


def test_figure_7_points_rings_and_bars():
    curvature, training = curvature_table(), training_table()
    zone = goldilocks_zone(curvature)  # the bump's zone is the single scale 1
    fig = figures.figure_7(curvature, training, zone)
    render(fig)
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 2 * len(VARIANTS)  # temperature and alpha rows
    assert sum(ax.get_label() == "<colorbar>" for ax in fig.axes) == 2
    for ax in panels:
        points, rings = [c for c in ax.collections if isinstance(c, PathCollection)]
        # three trained scales, each matched to a finite curvature value
        assert len(points.get_offsets()) == 3
        assert len(rings.get_offsets()) == 1  # only scale 1 lies in the zone
    # seed means: the ring sits on the point of scale 1 (x: curvature mean at 1)
    top = panels[0]
    ring = next(c for c in top.collections if c.get_label() == "trained scale in the zone")
    x_mean = curvature[
        (curvature["variant"] == "homogeneous")
        & (curvature["scaling"] == "temperature")
        & (curvature["scale"] == 1.0)
    ]["hessian_trace_ratio"].mean()
    assert ring.get_offsets()[0][0] == pytest.approx(x_mean)
    assert r"\|H\|_F" in fig._suptitle.get_text() and "||" not in fig._suptitle.get_text()


def test_figure_7_missing_curvature_zone_and_training():
    curvature, training = curvature_table(), training_table()
    no_alpha = curvature[curvature["scaling"] != "alpha"]
    fig = figures.figure_7(no_alpha, training, None)
    render(fig)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert texts.count("3 scale(s) without\na finite value") == len(VARIANTS)
    assert not fig.legends  # no zone: no ring
    with pytest.raises(ValueError, match="no training cells"):
        figures.figure_7(curvature, training.iloc[:0], None)
    assert figures.FIGURES[7] is figures.figure_7


def test_one_point_zone_is_shaded_between_its_interpolated_edges():
    curvature = curvature_table()
    zone = goldilocks_zone(curvature)
    row = zone[(zone["variant"] == "homogeneous") & (zone["scaling"] == "alpha")].iloc[0]
    assert row["lower"] == row["upper"] == 1.0  # one grid point: the case to draw
    fig = figures.figure_1(curvature, zone)
    render(fig)
    band = next(p for p in fig.axes[0].patches if p.get_width() > 0)
    lo, hi = np.log10(band.get_x()), np.log10(band.get_x() + band.get_width())
    # the band spans where the curve crosses the threshold, strictly between grid points
    assert lo == pytest.approx(np.log10(row["lower_edge"]))
    assert hi == pytest.approx(np.log10(row["upper_edge"]))
    assert -1 < lo < 0 < hi < 1
    dashed = sorted(line.get_xdata()[0] for line in fig.axes[0].lines if line.get_ls() == "--")
    assert dashed == pytest.approx([row["lower_edge"], row["upper_edge"]])
    assert r"Tr$(H)/\|H\|_F$" in fig._suptitle.get_text()


def test_heatmap_ticks_stay_on_the_grid():
    scales = [1e-9, 10**-4.5, 1.0, 10**4.5, 1e9]
    training = training_table(scales=scales)
    fig = figures.figure_2(training, None)
    render(fig)
    for ax in (a for a in fig.axes if a.get_label() != "<colorbar>"):
        ticks = ax.get_xticks()
        assert set(np.round(np.log10(ticks), 6)) <= set(np.round(np.log10(scales), 6))
        assert len(ticks) <= figures.MAX_TICKS and ticks.min() == 1e-9 and ticks.max() == 1e9
        assert [t.get_text() for t in ax.get_xticklabels()] == ["$10^{-9}$", "$10^{0}$", "$10^{9}$"]
        assert not len(ax.xaxis.get_minorticklocs())


def test_joint_residual_is_a_second_joint_curve_in_figure_1_and_its_own_rows_in_figure_6():
    curvature = curvature_table()
    extra = curvature[(curvature["scaling"] == "joint") & (curvature["variant"] == "layernorm")]
    extra = extra.assign(scaling="joint_residual", hessian_trace_ratio=-0.5)
    extra = extra.assign(alpha=extra["scale"], temperature=extra["scale"] ** 3)  # m = 3
    both = pd.concat([curvature, extra], ignore_index=True)
    fig = figures.figure_1(both, goldilocks_zone(both))
    render(fig)
    assert len(fig.axes) == 3 * len(VARIANTS)  # no row of its own
    joint_ln = fig.axes[1 * len(VARIANTS) + 1]  # joint row, layernorm column
    labels = joint_ln.get_legend_handles_labels()[1]
    # labelled with m, read off the rows' (alpha, T = alpha^3)
    assert len(labels) == 2 and labels[1] == r"$T=\alpha^{3}$ (m)"
    assert not fig.axes[1 * len(VARIANTS)].get_legend_handles_labels()[1]  # homogeneous: one
    fig6 = figures.figure_6(both)
    render(fig6)
    visible = [ax for ax in fig6.axes if ax.get_visible()]
    assert len(fig6.axes) == 8 * len(VARIANTS) and len(visible) == 8 * len(VARIANTS) - 2


# What is drawn: each figure's plotted values against the table they come from. The
# fixtures' columns differ (test_acc = train_acc - 0.05; G-term and H-term scaled apart
# from the Hessian below), so a figure drawn from the wrong column fails these.


def panels(fig) -> list:
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def curves(ax) -> list:
    """The seed-mean lines of a panel (curve_with_band draws them with markers)."""
    return [line for line in ax.get_lines() if line.get_marker() == "o"]


def distinct_terms(curvature: pd.DataFrame) -> pd.DataFrame:
    return curvature.assign(
        gterm_trace_ratio=curvature["gterm_trace_ratio"] * 0.5,
        hterm_trace_ratio=curvature["hterm_trace_ratio"] * 0.25,
    )


def seed_mean(frame: pd.DataFrame, column: str, x: str = "scale") -> pd.Series:
    return frame.groupby(x)[column].mean().sort_index()


def of(frame: pd.DataFrame, **keys) -> pd.DataFrame:
    for key, value in keys.items():
        frame = frame[frame[key] == value]
    return frame


def test_figure_1_draws_the_hessian_ratio_and_shades_the_zone_interval():
    curvature = distinct_terms(curvature_table())
    zone = goldilocks_zone(curvature, threshold=0.3)  # a zone of three scales: 0.1 to 10
    fig = figures.figure_1(curvature, zone)
    render(fig)
    axes = panels(fig)
    assert len(axes) == 3 * len(VARIANTS)  # rows alpha, joint, temperature x variants
    ax = axes[0]  # alpha row, homogeneous column
    (line,) = curves(ax)
    expected = seed_mean(
        of(curvature, variant="homogeneous", scaling="alpha"), "hessian_trace_ratio"
    )
    np.testing.assert_allclose(line.get_xdata(), expected.index)
    np.testing.assert_allclose(line.get_ydata(), expected.to_numpy())
    row = of(zone, variant="homogeneous", scaling="alpha").iloc[0]
    assert (row["lower"], row["upper"]) == (0.1, 10.0)  # grid bounds
    # drawn at the interpolated edges: past the last grid scales inside, short of the
    # first outside (the grid steps half a decade)
    edges = (row["lower_edge"], row["upper_edge"])
    assert 10**-1.5 < edges[0] < 0.1 and 10 < edges[1] < 10**1.5
    (band,) = [p for p in ax.patches if p.get_width() > 0]
    assert (band.get_x(), band.get_x() + band.get_width()) == pytest.approx(edges)
    dashed = sorted(line.get_xdata()[0] for line in ax.get_lines() if line.get_linestyle() == "--")
    assert dashed == pytest.approx(list(edges))


def test_figure_6_draws_each_matrix_from_its_own_column():
    curvature = distinct_terms(curvature_table())
    fig = figures.figure_6(curvature, scalings=["alpha"])
    render(fig)
    axes = panels(fig)
    assert len(axes) == 2 * len(VARIANTS)  # trace ratio and spectral norm rows
    sub = of(curvature, variant="layernorm", scaling="alpha")
    top = {line.get_label(): line for line in curves(axes[1])}
    for m, name in figures.lines.MATRICES.items():
        np.testing.assert_allclose(
            top[name].get_ydata(), seed_mean(sub, f"{m}_trace_ratio").to_numpy()
        )


def test_figure_3_draws_the_kl_column_floored():
    kl = kl_table()
    fig = figures.figure_3(kl)
    render(fig)
    assert len(panels(fig)) == 2
    line = next(c for c in curves(fig.axes[0]) if c.get_label() == "layernorm")
    expected = seed_mean(of(kl, variant="layernorm"), "kl", x="alpha").clip(lower=figures.KL_FLOOR)
    np.testing.assert_allclose(line.get_ydata(), expected.to_numpy())
    rel = next(c for c in curves(fig.axes[1]) if c.get_label() == "layernorm")
    expected = seed_mean(of(kl, variant="layernorm"), "logit_rel_error", x="alpha")
    np.testing.assert_allclose(rel.get_ydata(), expected.to_numpy())


def heatmap_values(training: pd.DataFrame, variant: str, scaling: str, column: str):
    """The seed-mean final ``column`` over lr_base x scale, NaN for a diverged cell."""
    final = of(training, variant=variant, scaling=scaling, epoch=training["epoch"].max())
    grid = final.groupby(["lr_base", "scale"])[column].mean().unstack("scale")
    return grid.sort_index().sort_index(axis=1).to_numpy(float)


@pytest.mark.parametrize(
    ("draw", "scaling", "columns"),
    [
        (figures.figure_2, "temperature", ["train_acc"]),
        (figures.figure_4, "alpha", ["train_acc", "test_acc"]),
        (figures.figure_5, "temperature", ["test_acc"]),
    ],
)
def test_heatmaps_draw_their_column_the_diverged_cells_and_the_zone(draw, scaling, columns):
    training, curvature = training_table(), curvature_table()
    zone = goldilocks_zone(curvature, threshold=0.3)
    fig = draw(training, zone)
    render(fig)
    axes = panels(fig)
    assert len(axes) == len(columns) * len(VARIANTS)
    for i, column in enumerate(columns):
        ax = axes[i * len(VARIANTS)]  # the homogeneous panel of the row
        (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
        drawn = np.ma.filled(mesh.get_array().astype(float), np.nan).reshape(2, 3)
        expected = heatmap_values(training, "homogeneous", scaling, column)
        np.testing.assert_allclose(drawn, expected)  # NaN where it diverged
        (crosses,) = [c for c in ax.collections if isinstance(c, PathCollection)]
        gone = of(training, variant="homogeneous", scaling=scaling, diverged=True)
        drawn_crosses = sorted(map(tuple, crosses.get_offsets().tolist()))
        assert drawn_crosses == sorted(set(zip(gone["scale"], gone["lr_base"], strict=True)))
        assert drawn_crosses  # the fixture has a diverged cell per panel
        row = of(zone, variant="homogeneous", scaling=scaling).iloc[0]
        dashed = [line.get_xdata()[0] for line in ax.get_lines() if line.get_linestyle() == "--"]
        edges = (row["lower_edge"], row["upper_edge"])  # interpolated: the drawn lines
        in_range = [b for b in edges if 0.1 / 10**0.5 <= b <= 10**1.5]
        assert dashed == pytest.approx(in_range) and len(dashed) >= 1


def test_figure_7_plots_the_best_final_train_accuracy_with_diverged_cells_at_epoch_0():
    curvature, training = curvature_table(), training_table()
    # seed 0 diverges at every eta0 of scale 10: its best is its epoch-0 accuracy
    gone = (training["scale"] == 10.0) & (training["seed"] == 0) & (training["epoch"] == 10)
    training.loc[gone, ["train_acc", "test_acc"]] = np.nan
    training.loc[gone, "diverged"] = True
    fig = figures.figure_7(curvature, training, goldilocks_zone(curvature))
    render(fig)
    ax = panels(fig)[0]  # temperature row, homogeneous column
    points = next(c for c in ax.collections if isinstance(c, PathCollection))
    final = of(training, variant="homogeneous", scaling="temperature", epoch=10)
    # a diverged cell counts with its epoch-0 accuracy (0.1), not NaN and not dropped
    acc = final["train_acc"].fillna(0.1)
    best = acc.groupby([final["scale"], final["seed"]]).max().groupby(level="scale").mean()
    np.testing.assert_allclose(points.get_offsets()[:, 1], best.to_numpy())
    curve = seed_mean(of(curvature, variant="homogeneous", scaling="temperature"), claims.RATIO)
    np.testing.assert_allclose(points.get_offsets()[:, 0], curve.loc[best.index].to_numpy())


def test_importing_the_figures_leaves_the_backend_alone():
    code = (
        "import matplotlib; matplotlib.use('svg'); import goldilocks.figures; "
        "print(matplotlib.get_backend())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "svg"
