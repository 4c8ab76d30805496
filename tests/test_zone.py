"""The Goldilocks-zone boundary on curves with a known answer."""

import math

import numpy as np
import pandas as pd
import pytest

from goldilocks.zone import (
    bounds,
    contains,
    edges,
    equal_density,
    goldilocks_zone,
    inside,
    with_trained,
    zone_bounds,
    zone_row,
)

S = np.array([1e-3, 1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3])


def test_single_peak():
    v = np.array([0.0, 0.1, 0.6, 1.0, 0.7, 0.2, 0.0])
    z = zone_bounds(S, v, 0.5)
    assert (z["lower"], z["upper"], z["peak_scale"], z["peak_value"]) == (1e-1, 1e1, 1.0, 1.0)


def test_plateau_and_unsorted_input():
    v = np.array([0.9, 0.9, 1.0, 0.95, 0.9, 0.9, 0.9])
    order = np.random.default_rng(0).permutation(len(S))
    z = zone_bounds(S[order], v[order], 0.5)
    assert (z["lower"], z["upper"]) == (1e-3, 1e3)


def test_edges_interpolate_in_log_scale_between_grid_points():
    """A one-point zone still has a width: each edge is where the curve, linear in log10 of
    the scale, crosses threshold x peak between the grid point inside and the one outside."""
    v = np.array([0.0, 0.1, 0.25, 1.0, 0.4, 0.2, 0.0])
    z = zone_bounds(S, v, 0.5)
    assert (z["lower"], z["upper"]) == (1.0, 1.0)  # one grid point
    # lower: 1.0 at 10^0 (in), 0.25 at 10^-1 (out): 0.5 is 2/3 of the way down
    assert z["lower_edge"] == pytest.approx(10 ** (-2 / 3))
    # upper: 1.0 at 10^0 (in), 0.4 at 10^1 (out): 0.5 is 5/6 of the way up
    assert z["upper_edge"] == pytest.approx(10 ** (5 / 6))
    assert z["width_decades"] == pytest.approx(1.5)
    assert not z["lower_open"] and not z["upper_open"]


def test_edge_at_the_grid_end_is_open_and_a_nan_neighbour_keeps_the_grid_point():
    v = np.array([0.9, 0.95, 1.0, 0.8, np.nan, 0.9, 0.9])
    z = zone_bounds(S, v, 0.5)
    assert (z["lower"], z["lower_edge"], z["lower_open"]) == (1e-3, 1e-3, True)
    assert (z["upper"], z["upper_edge"], z["upper_open"]) == (1.0, 1.0, False)  # NaN next
    assert z["width_decades"] == pytest.approx(3.0)
    none = zone_bounds(S, -np.ones(len(S)), 0.5)
    assert math.isnan(none["lower_edge"]) and math.isnan(none["width_decades"])
    assert none["lower_open"] is False and none["upper_open"] is False


def test_no_point_above_zero_means_no_zone():
    z = zone_bounds(S, -np.ones(len(S)), 0.5)
    assert math.isnan(z["lower"]) and math.isnan(z["upper"])
    assert z["peak_value"] == -1.0


def test_nan_values_end_the_interval():
    v = np.array([0.8, np.nan, 0.9, 1.0, 0.9, np.nan, 0.9])
    z = zone_bounds(S, v, 0.5)
    assert (z["lower"], z["upper"]) == (1e-1, 1e1)
    assert math.isnan(zone_bounds(S, np.full(len(S), np.nan))["peak_value"])


def test_contiguity_is_required():
    v = np.array([0.9, 0.1, 0.6, 1.0, 0.2, 0.95, 0.0])
    z = zone_bounds(S, v, 0.5)
    assert (z["lower"], z["upper"]) == (1e-1, 1.0)


def test_table_uses_seed_means():
    rows = []
    for seed, bump in ((0, 0.0), (1, 0.4)):
        for s, v in zip(S, [0.0, 0.1, 0.3, 1.0, 0.5, 0.2, 0.0], strict=True):
            rows.append(
                dict(
                    architecture="lenet300100",
                    dataset="synthetic",
                    variant="bias",
                    scaling="temperature",
                    scale=s,
                    seed=seed,
                    hessian_trace_ratio=v + (bump if s == 1e-1 else 0.0),
                )
            )
    z = goldilocks_zone(pd.DataFrame(rows), 0.5)
    assert len(z) == 1
    # seed mean at 1e-1 is 0.5, exactly at threshold 0.5 x 1.0: inside.
    assert z.iloc[0]["lower"] == 1e-1 and z.iloc[0]["upper"] == 1e1
    assert list(z.columns) == [
        "architecture",
        "dataset",
        "variant",
        "scaling",
        "lower",
        "upper",
        "peak_scale",
        "peak_value",
        "threshold",
        "lower_edge",
        "upper_edge",
        "lower_open",
        "upper_open",
        "width_decades",
    ]
    assert (z["threshold"] == 0.5).all()


@pytest.mark.parametrize("threshold", [0.25, 0.75])
def test_threshold_moves_bounds(threshold):
    v = np.array([0.0, 0.3, 0.6, 1.0, 0.6, 0.3, 0.0])
    z = zone_bounds(S, v, threshold)
    expected = (1e-2, 1e2) if threshold == 0.25 else (1.0, 1.0)
    assert (z["lower"], z["upper"]) == expected


def test_zone_row_bounds_and_inside():
    """The one zone look-up of the claims and the figures."""
    pair = {"architecture": "lenet300100", "dataset": "fmnist"}
    zone = pd.DataFrame(
        [
            {**pair, "variant": "bias", "scaling": "alpha", "lower": 0.1, "upper": 10.0},
            {**pair, "variant": "bias", "scaling": "joint", "lower": math.nan, "upper": math.nan},
            {
                **pair,
                "dataset": "cifar10",
                "variant": "bias",
                "scaling": "alpha",
                "lower": 1.0,
                "upper": 1.0,
            },
        ]
    )
    row, why = zone_row(zone, "bias", "alpha", pair=("lenet300100", "fmnist"))
    assert bounds(row) == (0.1, 10.0) and why == ""
    assert bounds(zone_row(zone, "bias", "alpha", pair=("lenet300100", "cifar10"))[0]) == (1, 1)
    assert bounds(zone_row(zone, "bias", "joint")[0]) is None  # a row without a zone
    assert zone_row(zone, "residual", "alpha") == (None, "no zone row for 'residual' under 'alpha'")
    assert zone_row(None, "bias", "alpha") == (None, "no zone table")
    # bounds included up to LOG_TOL in log10 (grid values stored to six digits); NaN: out
    flags = inside(0.1, 10.0, [0.0999999, 0.099, 1.0, 10.00001, 11.0, math.nan])
    assert flags.tolist() == [True, False, True, True, False, False]


def _row(**fields) -> pd.Series:
    base = {"lower": 1.0, "upper": 1.0, "lower_edge": 0.3, "upper_edge": 4.0}
    return pd.Series({**base, "lower_open": False, "upper_open": False, **fields})


def test_contains_judges_trained_scales_by_the_interpolated_edges():
    """A trained scale between grid points is inside when the curve crosses the threshold
    beyond it, whatever its nearest curvature grid point."""
    row = _row()  # one grid point wide (1.0), edges at 0.3 and 4
    assert contains(row, [0.1, 0.31, 1.0, 3.9, 4.2]).tolist() == [0, 1, 1, 1, 0]
    assert edges(row) == (0.3, 4.0)
    # an open edge (the curve still above the threshold at the grid's end) is unbounded
    opened = _row(upper=1e9, upper_edge=1e9, upper_open=True)
    assert edges(opened) == (0.3, 1e9) and edges(opened, open_unbounded=True) == (0.3, math.inf)
    assert contains(opened, [1e12, 0.2]).tolist() == [True, False]
    # no zone; a table written before the edges: the grid bounds
    assert contains(_row(lower=math.nan, upper=math.nan), [1.0]) is None
    old = pd.Series({"lower": 0.1, "upper": 10.0})
    assert edges(old) == (0.1, 10.0) and contains(old, [0.05, 10.0]).tolist() == [False, True]


def test_zone_table_edges_feed_contains():
    scales = 10.0 ** np.arange(-2, 3)  # one decade apart
    z = zone_bounds(scales, np.array([0.0, 0.2, 1.0, 0.4, 0.0]), threshold=0.5)
    row = pd.Series(z)
    assert z["lower"] == z["upper"] == 1.0
    # the curve crosses 0.5 5/8 of the way to 0.1 and 5/6 of the way to 10 (log scale)
    assert math.log10(z["lower_edge"]) == pytest.approx(-5 / 8)
    assert math.log10(z["upper_edge"]) == pytest.approx(5 / 6)
    assert contains(row, [10**-0.6, 10**-0.65, 10**0.8, 10**0.9]).tolist() == [1, 0, 1, 0]


def test_equal_density_keeps_the_evenly_spaced_stretch():
    exps = np.array([-9, -2.25, -1.5, -0.75, 0, 0.75, 1.5, 2.25, 9])
    scales = 10.0**exps
    inside_mask = np.abs(exps) <= 1
    keep = equal_density(scales, inside_mask)
    assert exps[keep].tolist() == [-2.25, -1.5, -0.75, 0, 0.75, 1.5, 2.25]
    # a uniform grid is one run: everything is kept; the order of the input is kept
    uniform = 10.0 ** np.array([3.0, -3.0, 0.0, 1.5, -1.5])
    assert equal_density(uniform, [0, 0, 1, 0, 0]).all()
    # a base step that meets the refinement at its own step joins the run
    joined = np.array([-3, -2.25, -1.5, -0.75, 0, 0.75, 1.5, 2.25, 3, 6])
    keep = equal_density(10.0**joined, np.abs(joined) <= 1)
    assert joined[keep].tolist() == [-3, -2.25, -1.5, -0.75, 0, 0.75, 1.5, 2.25, 3]
    # two dense stretches: the one holding both inside and outside scales
    two = np.array([-6, -5.9, -5.8, 0, 0.1, 0.2, 0.3])
    keep = equal_density(10.0**two, (two >= 0.05) & (two <= 0.25))
    assert two[keep].tolist() == [0, 0.1, 0.2, 0.3]


def test_with_trained_counts_the_trained_scales_inside_each_zone():
    keys = {"architecture": "lenet300100", "dataset": "fmnist", "variant": "bias"}
    zone = pd.DataFrame(
        [
            {**keys, "scaling": "temperature", **_row(), "upper": 1.0},
            {**keys, "scaling": "alpha", **_row(lower=math.nan, upper=math.nan)},
            {**keys, "scaling": "joint", **_row()},
        ]
    )
    exps = [-2.25, -1.5, -0.5, 0, 0.5, 1.5]  # 10^-0.5 = 0.32 .. 10^0.5 = 3.2 inside [0.3, 4]
    training = pd.DataFrame(
        [
            {**keys, "scaling": s, "scale": 10.0**e, "epoch": epoch}
            for s in ("temperature", "alpha")
            for e in exps
            for epoch in (0, 10)
        ]
    )
    out = with_trained(zone, training)
    assert out["trained_scales"].tolist() == [6, 6, pd.NA]  # joint: not trained
    assert out["trained_inside"].tolist() == [3, pd.NA, pd.NA]  # alpha: no zone
    assert with_trained(zone, None)["trained_inside"].isna().all()
    assert list(out.columns[: len(zone.columns)]) == list(zone.columns)


def test_equal_density_copes_with_a_base_grid_off_the_refinement():
    """A base step that does not meet the refinement's leaves short odd gaps around it;
    a run needs 3 scales, so the refined stretch still wins."""
    exps = np.array([-12, -10, -8, -6, -4, -2.25, -2, -1.5, -0.75, 0, 0.75, 1.5, 2, 2.25, 4, 6])
    keep = equal_density(10.0**exps, (exps >= -2) & (exps <= 1))
    assert exps[keep].tolist() == [-1.5, -0.75, 0, 0.75, 1.5]
    assert equal_density(10.0 ** np.array([0.0, 1.0]), [True, False]).all()  # no run of 3
