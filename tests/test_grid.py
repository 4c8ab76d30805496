"""Grid construction, canonical scale tokens and (alpha, T) of each scaling."""

from math import inf

import pytest

from goldilocks.grid import (
    alpha_and_temperature,
    canonical_scale,
    curvature_cells,
    log_grid,
    lr_factor,
    scale_token,
    train_cells,
)


def test_scale_tokens_round_trip():
    for value in (1e-9, 0.001, 0.0316227766, 1.0, 1e6, 3.1622776601683795e8):
        token = scale_token(value)
        assert scale_token(float(token)) == token
        assert canonical_scale(token) == float(token)
    assert scale_token(1e-6) == "1e-06"
    with pytest.raises(ValueError, match="positive"):
        scale_token(0.0)


def test_log_grid_times_depth_and_extra():
    spec = {"log10_min": -3, "log10_max": 3, "num": 3, "times_depth": True, "extra": [2.0, 1.0]}
    assert log_grid(spec, 3) == [1e-9, 1.0, 2.0, 1e9]
    assert log_grid({"log10_min": 0, "log10_max": 0, "num": 1}, 5) == [1.0]


def test_joint_uses_output_exponent():
    assert alpha_and_temperature("joint", 10.0, "lenet300100", "homogeneous") == (10.0, 1000.0)
    assert alpha_and_temperature("joint", 10.0, "lenet300100", "residual") == (10.0, 1e4)
    assert alpha_and_temperature("joint", 10.0, "lenet300100", "layernorm") == (10.0, 10.0)
    assert alpha_and_temperature("temperature", 0.5, "lenet5", "bias") == (1.0, 0.5)


def test_an_overflowing_temperature_or_rate_is_inf_not_an_error():
    assert alpha_and_temperature("joint", 1e120, "lenet300100", "homogeneous") == (1e120, inf)
    assert lr_factor("alpha", 1e-200, "lenet300100", "residual") == inf  # alpha^(2-L), L=4


def _config(**training):
    grid = {"log10_min": -1, "log10_max": 1, "num": 3}
    scales = {"alpha": grid, "alpha_linear": {**grid, "times_depth": True}, "temperature": grid}
    return {
        "pairs": [{"architecture": "lenet300100", "dataset": "synthetic"}],
        "variants": ["homogeneous", "layernorm"],
        "seeds": [0, 1],
        "curvature": {"scalings": ["alpha", "temperature", "joint"], "scales": scales},
        "training": {
            "scalings": ["temperature"],
            "scales": scales,
            "lr_base": [0.1, 1.0],
            **training,
        },
    }


def test_cell_counts_and_keys():
    cells = curvature_cells(_config())
    assert len(cells) == 2 * 3 * 3 * 2
    ln_alpha = sorted(
        {float(c.scale) for c in cells if c.variant == "layernorm" and c.scaling == "alpha"}
    )
    assert ln_alpha == [1e-3, 1.0, 1e3]  # alpha_linear grid, times L = 3
    assert len(set(cells)) == len(cells)
    assert len(train_cells(_config())) == 2 * 3 * 2 * 2
    assert len(train_cells(_config(seeds=[0]))) == 2 * 3 * 2
    assert train_cells(_config(enabled=False)) == []
