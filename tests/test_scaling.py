"""SPEC section 4's exact facts for the homogeneous variant, in float64.

Because ``f(alpha theta) = alpha^L f(theta)`` for the homogeneous variant:
1. ``alpha^2 H_alpha = H_T`` with ``T = alpha^(-L)`` (same projection R);
2. joint scaling gives ``alpha^-2`` times the unscaled Hessian;
3. GD at alpha with ``lr = alpha^(2-L) eta0`` follows GD at ``T = alpha^(-L)`` with
   ``lr = T eta0`` (parameters differ by the factor alpha at every step). This is the
   test of the learning-rate rules of SPEC section 5.
Checked at scales where the softmax is not saturated.
"""

import math

import pytest
import torch

from goldilocks.architectures import depth
from goldilocks.curvature import (
    gauss_newton,
    matrix_metrics,
    projected_hessian,
    projected_jacobian,
    sparse_projection,
)
from goldilocks.grid import alpha_and_temperature, lr_factor
from goldilocks.models import build_model, count_params, forward, init_params
from goldilocks.scaling import scale_params, tempered_loss
from goldilocks.training import TrainState, train

ARCH = "lenet300100"
L = depth(ARCH, "homogeneous").depth


@pytest.fixture(scope="module")
def case():
    model = build_model(ARCH, "homogeneous", (1, 28, 28), 10)
    params = init_params(model, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 1, 28, 28, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (64,), generator=g)
    proj = sparse_projection(count_params(params), 20, torch.Generator().manual_seed(2))
    return model, params, x, y, proj


def _matrices(model, params, x, y, temperature, proj):
    """(H, G, H_term) projected, at ``params``."""

    def loss(p):
        return tempered_loss(forward(model, p, x), y, temperature)

    h = projected_hessian(loss, params, proj)
    logits = forward(model, params, x)
    g = gauss_newton(
        projected_jacobian(lambda p: forward(model, p, x), params, proj), logits, temperature
    )
    return {"hessian": h, "gterm": g, "hterm": h - g}


def _rel(a, b):
    return (torch.linalg.norm(a - b) / torch.linalg.norm(b)).item()


@pytest.mark.parametrize("alpha", [1e-2, 0.3, 3.0, 10.0])
def test_alpha_scaling_equals_temperature_scaling(case, alpha):
    model, params, x, y, proj = case
    a_alpha, t_alpha = alpha_and_temperature("alpha", alpha, ARCH, "homogeneous")
    at_alpha = _matrices(model, scale_params(params, a_alpha), x, y, t_alpha, proj)
    a_temp, temp = alpha_and_temperature("temperature", alpha ** (-L), ARCH, "homogeneous")
    at_temp = _matrices(model, scale_params(params, a_temp), x, y, temp, proj)
    for name in at_alpha:
        assert _rel(alpha**2 * at_alpha[name], at_temp[name]) <= 1e-10, name
        ma, mt = matrix_metrics(at_alpha[name]), matrix_metrics(at_temp[name])
        assert ma["trace_ratio"] == pytest.approx(mt["trace_ratio"], abs=1e-10)
        assert ma["frac_pos"] == mt["frac_pos"]
        assert ma["spectral_norm"] == pytest.approx(alpha**-2 * mt["spectral_norm"], rel=1e-10)
    # Loss, logits equal; gradient norm differs by exactly alpha^-1.
    za = forward(model, scale_params(params, alpha), x)
    zt = forward(model, params, x) / temp
    assert _rel(za, zt) <= 1e-12


@pytest.mark.parametrize("alpha", [1e-2, 0.3, 3.0, 10.0])
def test_joint_scaling_is_unscaled_hessian_over_alpha_squared(case, alpha):
    model, params, x, y, proj = case
    a, t = alpha_and_temperature("joint", alpha, ARCH, "homogeneous")
    assert t == pytest.approx(alpha**L, rel=1e-15)
    joint = _matrices(model, scale_params(params, a), x, y, t, proj)
    base = _matrices(model, params, x, y, 1.0, proj)
    for name in joint:
        assert _rel(alpha**2 * joint[name], base[name]) <= 1e-10, name
        assert matrix_metrics(joint[name])["trace_ratio"] == pytest.approx(
            matrix_metrics(base[name])["trace_ratio"], abs=1e-10
        )


@pytest.mark.parametrize("alpha", [0.1, 3.0])
def test_gd_paths_match_under_the_learning_rate_rules(case, alpha):
    """GD at alpha (lr alpha^(2-L) eta0) equals GD at T = alpha^-L (lr T eta0), times alpha."""
    model, params, x, y, _ = case
    eta0, epochs = 0.5, 6
    runs = {}
    for scaling, scale in (("alpha", alpha), ("temperature", alpha ** (-L))):
        a, t = alpha_and_temperature(scaling, scale, ARCH, "homogeneous")
        lr = eta0 * lr_factor(scaling, scale, ARCH, "homogeneous")
        runs[scaling] = train(
            model, TrainState(scale_params(params, a)), (x, y), (x, y), t, lr, epochs, 1
        )
    sa, st = runs["alpha"], runs["temperature"]
    for name in params:
        assert _rel(sa.params[name], alpha * st.params[name]) <= 1e-10, name
    for ra, rt in zip(sa.rows, st.rows, strict=True):
        assert ra["train_loss"] == pytest.approx(rt["train_loss"], rel=1e-10)
        assert ra["train_acc"] == rt["train_acc"]
    # The path moved (so the match is not trivial).
    assert abs(sa.rows[-1]["train_loss"] - sa.rows[0]["train_loss"]) > 1e-3


def test_gd_paths_differ_with_a_wrong_rule(case):
    """Control: the unadjusted rate (lr = eta0 under both) breaks the equivalence."""
    model, params, x, y, _ = case
    alpha = 3.0
    sa = train(model, TrainState(scale_params(params, alpha)), (x, y), (x, y), 1.0, 0.5, 3, 1)
    st = train(model, TrainState(dict(params)), (x, y), (x, y), alpha ** (-L), 0.5, 3, 1)
    assert _rel(sa.params["fc1.weight"], alpha * st.params["fc1.weight"]) > 1e-3


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
    with pytest.raises(ValueError, match="no learning-rate rule"):
        lr_factor("joint", 1.0, "lenet300100", "residual")


def test_scale_params_is_pure(case):
    _, params, *_ = case
    before = params["fc1.weight"].clone()
    scaled = scale_params(params, 3.0)
    assert torch.equal(params["fc1.weight"], before)
    assert torch.equal(scaled["fc1.weight"], 3.0 * before)
    assert math.isclose(
        scaled["head.weight"].norm().item(),
        3 * before.new_tensor(0).item() + 3 * params["head.weight"].norm().item(),
    )
