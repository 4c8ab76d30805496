"""The exact scaling facts of docs/method.md section 4 for the homogeneous variant, in float64.

Because ``f(alpha theta) = alpha^L f(theta)`` for the homogeneous variant:
1. ``alpha^2 H_alpha = H_T`` with ``T = alpha^(-L)`` (same projection R);
2. joint scaling gives ``alpha^-2`` times the unscaled Hessian;
3. GD at alpha with ``lr = alpha^(2-L) eta0`` follows GD at ``T = alpha^(-L)`` with
   ``lr = T eta0`` (parameters differ by the factor alpha at every step). This is the
   test of the learning-rate rules of docs/method.md section 5.
Checked at scales where the softmax is not saturated, for LeNet-300-100, LeNet-5 (on
CIFAR-10's 3x32x32) and ResNet-4 (on Fashion-MNIST's 1x28x28); the convolutional cases use
small batches and subspaces because float64 convolutions are slow on the CPU.
"""

import math
from dataclasses import dataclass

import pytest
import torch

from goldilocks.curvature import (
    Problem,
    gauss_newton,
    matrix_metrics,
    projected_hessian,
    projected_jacobian,
    sparse_projection,
)
from goldilocks.grid import alpha_and_temperature, lr_factor
from goldilocks.models import build_model, count_params, forward, init_params
from goldilocks.scaling import scale_params
from goldilocks.training import TrainState, train
from goldilocks.variants import depth

#: architecture -> (input shape, batch size, subspace dimension d). ResNet-4 (global
#: average pooling, any input size) runs on 12x12 images: its float64 double-backward
#: convolutions at 28x28 cost about 5 s per Hessian on the CPU.
CASES = {
    "lenet300100": ((1, 28, 28), 64, 20),
    "lenet5": ((3, 32, 32), 16, 10),
    "resnet4": ((1, 12, 12), 8, 10),
}
#: (architecture, alpha) pairs for the matrix facts: alpha^L stays where the softmax is
#: not saturated (alpha = 10 gives logits x 1e5 for LeNet-5, where H is round-off).
MATRIX_ALPHAS = [("lenet300100", a) for a in (1e-2, 0.3, 3.0, 10.0)] + [
    (arch, a) for arch in ("lenet5", "resnet4") for a in (1e-2, 3.0)
]
GD_ALPHAS = [(arch, a) for arch in CASES for a in (0.1, 3.0)]


@dataclass(frozen=True)
class Case:
    arch: str
    L: int
    model: torch.nn.Module
    params: dict
    x: torch.Tensor
    y: torch.Tensor
    proj: object


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    arch = request.param
    shape, n, d = CASES[arch]
    model = build_model(arch, "homogeneous", shape, 10)
    params = init_params(model, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, *shape, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (n,), generator=g)
    proj = sparse_projection(count_params(params), d, torch.Generator().manual_seed(2))
    return Case(arch, depth(arch, "homogeneous").depth, model, params, x, y, proj)


def _matrices(model, params, x, y, temperature, proj):
    """(H, G, H_term) projected, at ``params``."""
    problem = Problem(model, params, x, y, temperature, proj)
    h = projected_hessian(problem)
    g = gauss_newton(projected_jacobian(problem), forward(model, params, x), temperature)
    return {"hessian": h, "gterm": g, "hterm": h - g}


def _rel(a, b):
    return (torch.linalg.norm(a - b) / torch.linalg.norm(b)).item()


@pytest.mark.parametrize(("case", "alpha"), MATRIX_ALPHAS, indirect=["case"])
def test_alpha_scaling_equals_temperature_scaling(case, alpha):
    model, params, x, y, proj, L = case.model, case.params, case.x, case.y, case.proj, case.L
    a_alpha, t_alpha = alpha_and_temperature("alpha", alpha, case.arch, "homogeneous")
    at_alpha = _matrices(model, scale_params(params, a_alpha), x, y, t_alpha, proj)
    a_temp, temp = alpha_and_temperature("temperature", alpha ** (-L), case.arch, "homogeneous")
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


@pytest.mark.parametrize(("case", "alpha"), MATRIX_ALPHAS, indirect=["case"])
def test_joint_scaling_is_unscaled_hessian_over_alpha_squared(case, alpha):
    model, params, x, y, proj, L = case.model, case.params, case.x, case.y, case.proj, case.L
    a, t = alpha_and_temperature("joint", alpha, case.arch, "homogeneous")
    assert t == pytest.approx(alpha**L, rel=1e-15)
    joint = _matrices(model, scale_params(params, a), x, y, t, proj)
    base = _matrices(model, params, x, y, 1.0, proj)
    for name in joint:
        assert _rel(alpha**2 * joint[name], base[name]) <= 1e-10, name
        assert matrix_metrics(joint[name])["trace_ratio"] == pytest.approx(
            matrix_metrics(base[name])["trace_ratio"], abs=1e-10
        )


@pytest.mark.parametrize(("case", "alpha"), GD_ALPHAS, indirect=["case"])
def test_gd_paths_match_under_the_learning_rate_rules(case, alpha):
    """GD at alpha (lr alpha^(2-L) eta0) equals GD at T = alpha^-L (lr T eta0), times alpha."""
    model, params, x, y, L = case.model, case.params, case.x, case.y, case.L
    eta0, epochs = 0.5, 6
    runs = {}
    for scaling, scale in (("alpha", alpha), ("temperature", alpha ** (-L))):
        a, t = alpha_and_temperature(scaling, scale, case.arch, "homogeneous")
        lr = eta0 * lr_factor(scaling, scale, case.arch, "homogeneous")
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
    moved = max(_rel(st.params[name], params[name]) for name in params)
    assert moved > 1e-4


def test_gd_paths_differ_with_a_wrong_rule(case):
    """Control: the unadjusted rate (lr = eta0 under both) breaks the equivalence."""
    model, params, x, y, L = case.model, case.params, case.x, case.y, case.L
    alpha = 3.0
    sa = train(model, TrainState(scale_params(params, alpha)), (x, y), (x, y), 1.0, 0.5, 3, 1)
    st = train(model, TrainState(dict(params)), (x, y), (x, y), alpha ** (-L), 0.5, 3, 1)
    assert _rel(sa.params["head.weight"], alpha * st.params["head.weight"]) > 1e-3


def test_scale_params_is_pure(case):
    params = case.params
    before = params["head.weight"].clone()
    scaled = scale_params(params, 3.0)
    assert torch.equal(params["head.weight"], before)
    assert torch.equal(scaled["head.weight"], 3.0 * before)
    assert math.isclose(
        scaled["head.weight"].norm().item(),
        3 * before.new_tensor(0).item() + 3 * params["head.weight"].norm().item(),
    )


def test_joint_residual_is_flat_at_small_alpha():
    """Residual variant, T = alpha^(L-𝓛) (paper Appendix D): at small alpha the identity
    path dominates, f = alpha^(L-𝓛) g + O(alpha^L), so the tempered logits f/T and the
    curvature ratio stop depending on alpha. Tolerances: the relative change of f/T between
    alpha = 1e-4 and 1e-2 is O(alpha^𝓛) = O(1e-4) (asserted below 1e-3), and Tr/||H||_F
    moves by less than 1e-3 over the same range. Control: under the plain joint scaling
    (T = alpha^L) the tempered logits grow as alpha^-𝓛 there."""
    shape, n, d = CASES["lenet300100"]
    model = build_model("lenet300100", "residual", shape, 10)
    params = init_params(model, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, *shape, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (n,), generator=g)
    proj = sparse_projection(count_params(params), d, torch.Generator().manual_seed(2))

    def at(scaling, scale):
        a, t = alpha_and_temperature(scaling, scale, "lenet300100", "residual")
        theta = scale_params(params, a)
        ratio = matrix_metrics(_matrices(model, theta, x, y, t, proj)["hessian"])["trace_ratio"]
        return forward(model, theta, x) / t, ratio

    (z4, r4), (z2, r2) = at("joint_residual", 1e-4), at("joint_residual", 1e-2)
    assert _rel(z2, z4) < 1e-3
    assert abs(r2 - r4) < 1e-3
    (zj4, _), (zj2, _) = at("joint", 1e-4), at("joint", 1e-2)
    assert torch.linalg.norm(zj4) / torch.linalg.norm(zj2) == pytest.approx(1e4, rel=1e-3)
