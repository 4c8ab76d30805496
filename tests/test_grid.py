"""Scale grids, canonical scale tokens, (alpha, T) of each scaling and the learning-rate
rules, all decided from a variant's description (docs/method.md sections 2 and 5)."""

import math
from math import inf

import pytest

from goldilocks.grid import (
    alpha_and_temperature,
    canonical_scale,
    log_grid,
    lr_factor,
    scale_spec,
    scale_token,
)
from goldilocks.variants import Description, Variant, depth, describe


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


def test_log_grid_refine_adds_a_denser_stretch_in_absolute_exponents():
    refine = {"log10_min": -0.75, "log10_max": 0.75, "num": 7}
    spec = {"log10_min": -3, "log10_max": 3, "num": 3, "times_depth": True, "refine": refine}
    exps = [round(math.log10(s), 6) for s in log_grid(spec, 3)]
    assert exps == [-9, -0.75, -0.5, -0.25, 0, 0.25, 0.5, 0.75, 9]  # refine not times L
    deep = {**spec, "refine": {**refine, "times_depth": True}}
    assert [round(math.log10(s), 6) for s in log_grid(deep, 4)] == [-12, -3, -2, -1, 0, 1, 2, 3, 12]
    assert log_grid({**spec, "refine": None}, 3) == [1e-9, 1.0, 1e9]


def test_joint_uses_output_exponent():
    assert alpha_and_temperature("joint", 10.0, "lenet300100", "homogeneous") == (10.0, 1000.0)
    assert alpha_and_temperature("joint", 10.0, "lenet300100", "residual") == (10.0, 1e4)
    assert alpha_and_temperature("joint", 10.0, "lenet300100", "layernorm") == (10.0, 10.0)
    assert alpha_and_temperature("temperature", 0.5, "lenet5", "bias") == (1.0, 0.5)


def test_an_overflowing_temperature_or_rate_is_inf_not_an_error():
    assert alpha_and_temperature("joint", 1e120, "lenet300100", "homogeneous") == (1e120, inf)
    assert lr_factor("alpha", 1e-200, "lenet300100", "residual") == inf  # alpha^(2-L), L=4


def test_the_alpha_grid_follows_the_output_exponent_not_the_name():
    scales = {"alpha": "narrow", "alpha_linear": "wide", "temperature": "T"}
    assert scale_spec(scales, "alpha", describe("lenet5", "layernorm")) == "wide"
    assert scale_spec(scales, "joint", describe("lenet5", "bias")) == "narrow"
    assert scale_spec(scales, "temperature", describe("lenet5", "layernorm")) == "T"
    # A variant of any name with k = 1 sweeps the wide grid.
    custom = Description("mlp", Variant("anything"), depth=7, residual_depth=0, output_exponent=1)
    assert scale_spec(scales, "alpha", custom) == "wide"


@pytest.mark.parametrize(
    ("scaling", "variant", "expected"),
    [
        ("temperature", "homogeneous", lambda s, d: s),
        ("temperature", "layernorm", lambda s, d: s),
        ("alpha", "homogeneous", lambda s, d: s ** (2 - d.depth)),
        ("alpha", "bias", lambda s, d: s ** (2 - d.depth)),
        ("alpha", "residual", lambda s, d: s ** (2 - d.depth)),
        ("alpha", "layernorm", lambda s, d: s),
        ("alpha", "combined", lambda s, d: s),
    ],
)
def test_lr_factor_follows_its_definition(scaling, variant, expected):
    for arch in ("lenet300100", "lenet5", "resnet4"):
        d = depth(arch, variant)
        for s in (1e-3, 0.5, 7.0):
            assert lr_factor(scaling, s, arch, variant) == pytest.approx(expected(s, d), rel=1e-15)


def test_lr_factor_residual_small_alpha_option():
    d = depth("lenet300100", "residual")
    got = lr_factor("alpha", 0.01, "lenet300100", "residual", "residual_small_alpha")
    assert got == pytest.approx(0.01 ** (2 - d.depth + d.residual_depth))
    # Only a skip without LayerNorm has that path: combined and bias keep their rules.
    for variant in ("combined", "bias"):
        rule = lr_factor("alpha", 0.01, "lenet300100", variant, "residual_small_alpha")
        assert rule == lr_factor("alpha", 0.01, "lenet300100", variant)
    with pytest.raises(ValueError, match="no learning-rate rule"):
        lr_factor("joint", 1.0, "lenet300100", "residual")


def test_lr_factor_is_alpha_to_the_two_minus_k():
    """The alpha rule is alpha^(2-k) for every built-in: 2-L, or 1 with LayerNorm."""
    for arch in ("lenet300100", "lenet5", "resnet4"):
        for variant in ("homogeneous", "bias", "residual", "layernorm", "combined"):
            k = describe(arch, variant).output_exponent
            assert lr_factor("alpha", 0.3, arch, variant) == 0.3 ** (2 - k)


def test_joint_residual_uses_the_small_alpha_exponent_of_every_variant():
    from goldilocks.grid import applies
    from goldilocks.registered import RegisteredDescription
    from goldilocks.variants import Variant

    assert alpha_and_temperature("joint_residual", 10.0, "lenet300100", "residual") == (10.0, 100.0)
    assert alpha_and_temperature("joint_residual", 10.0, "lenet5", "residual") == (10.0, 1e4)
    # m = L without a skip or bias (LayerNorm included), 1 with a bias
    assert alpha_and_temperature("joint_residual", 10.0, "lenet300100", "layernorm")[1] == 1e3
    assert alpha_and_temperature("joint_residual", 10.0, "lenet300100", "bias")[1] == 10.0
    assert alpha_and_temperature("joint_residual", 10.0, "lenet300100", "combined")[1] == 10.0
    for variant in ("homogeneous", "bias", "residual", "layernorm", "combined_affine"):
        assert applies("joint_residual", describe("lenet300100", variant))
    # a registered variant without m (no skip) has no joint_residual curve
    plain = RegisteredDescription("mine", Variant("plain"), 3, 0, output_exponent=3)
    assert not applies("joint_residual", plain) and applies("joint", plain)
