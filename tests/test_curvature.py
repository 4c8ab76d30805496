"""The curvature engine against a dense float64 Hessian of tiny models of every variant."""

import math

import pytest
import torch
from conftest import TINY, tiny_case

from goldilocks.curvature import (
    Problem,
    gauss_newton,
    matrix_metrics,
    measure,
    projected_hessian,
    projected_jacobian,
    resolve_methods,
    sparse_projection,
)
from goldilocks.models import count_params, forward
from goldilocks.scaling import tempered_loss


def _flat_fn(fn, params):
    names = list(params)
    shapes = [params[k].shape for k in names]

    def wrapped(flat):
        out, start = {}, 0
        for k, shape in zip(names, shapes, strict=True):
            out[k] = flat[start : start + shape.numel()].view(shape)
            start += shape.numel()
        return fn(out)

    return wrapped, torch.cat([params[k].reshape(-1) for k in names])


def _dense_references(model, params, x, y, temperature):
    """Dense H and G (P x P) by autograd.functional, the independent reference."""
    loss_flat, flat = _flat_fn(
        lambda p: tempered_loss(forward(model, p, x), y, temperature), params
    )
    logit_flat, _ = _flat_fn(lambda p: forward(model, p, x), params)
    hessian = torch.autograd.functional.hessian(loss_flat, flat)
    jac = torch.autograd.functional.jacobian(logit_flat, flat)  # (N, K, P)
    p = torch.softmax(logit_flat(flat) / temperature, -1)
    a = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    gn = torch.einsum("nkp,nkl,nlq->pq", jac, a, jac) / (len(y) * temperature**2)
    return hessian, gn


def _rel(a, b):
    return (torch.linalg.norm(a - b) / torch.linalg.norm(b)).item()


@pytest.mark.parametrize("architecture", list(TINY))
@pytest.mark.parametrize("temperature", [0.3, 1.0, 5.0])
def test_projected_hessian_matches_dense(architecture, variant, temperature):
    model, params, x, y = tiny_case(architecture, variant)
    proj = sparse_projection(count_params(params), 8, torch.Generator().manual_seed(3))
    r = proj.dense().T  # (P, d)
    dense_h, dense_g = _dense_references(model, params, x, y, temperature)
    problem = Problem(model, params, x, y, temperature, proj)
    for method in ("loop", "vmap"):
        h = projected_hessian(problem, method=method, chunk_size=3)
        assert _rel(h, r.T @ dense_h @ r) <= 1e-12, method
    for method in ("loop", "sparse", "vmap"):
        jr = projected_jacobian(problem, method)
        g = gauss_newton(jr, forward(model, params, x), temperature)
        assert _rel(g, r.T @ dense_g @ r) <= 1e-12, method
    # G is positive semi-definite; H = G + H_term by construction of H_term.
    assert torch.linalg.eigvalsh(g).min().item() >= -1e-12 * torch.linalg.norm(g).item()


def test_loop_and_vmap_agree_on_a_real_model():
    from goldilocks.models import build_model, init_params

    model = build_model("lenet300100", "combined", (1, 28, 28), 10)
    params = init_params(model, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(32, 1, 28, 28, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (32,), generator=g)
    proj = sparse_projection(count_params(params), 10, torch.Generator().manual_seed(2))
    problem = Problem(model, params, x, y, 1.0, proj)
    a = projected_hessian(problem, "loop")
    b = projected_hessian(problem, "vmap")
    assert _rel(a, b) <= 1e-12


@pytest.mark.parametrize("n_params", [50, 51, 99, 1000, 266_200, 1_000_000])
def test_projection_is_sparse_and_exactly_orthonormal(n_params):
    d = 50
    proj = sparse_projection(n_params, d, torch.Generator().manual_seed(0))
    s = min(math.ceil(math.sqrt(n_params)), n_params // d)
    assert proj.index.shape == (d, s)
    assert proj.index.unique().numel() == d * s  # disjoint supports
    r = proj.dense()  # (d, P)
    assert (r != 0).sum().item() == d * s
    # Round-off only: each diagonal entry sums s terms 1/s.
    assert (r @ r.T - torch.eye(d, dtype=torch.float64)).abs().max().item() <= 1e-14


def test_projection_depends_on_seed_only():
    a = sparse_projection(1000, 10, torch.Generator().manual_seed(7))
    b = sparse_projection(1000, 10, torch.Generator().manual_seed(7))
    c = sparse_projection(1000, 10, torch.Generator().manual_seed(8))
    assert torch.equal(a.index, b.index) and torch.equal(a.value, b.value)
    assert not torch.equal(a.index, c.index)


def test_projection_needs_p_at_least_d():
    with pytest.raises(ValueError, match="subspace_dim"):
        sparse_projection(10, 50, torch.Generator().manual_seed(0))


def test_matrix_metrics_known_spectrum():
    q, _ = torch.linalg.qr(
        torch.randn(4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    )
    eig = torch.tensor([3.0, 1.0, -1.0, 0.0], dtype=torch.float64)
    m = q @ torch.diag(eig) @ q.T
    got = matrix_metrics(m)
    assert got["trace_ratio"] == pytest.approx(3 / math.sqrt(11), rel=1e-12)
    assert got["frac_pos"] == 0.5
    assert got["eig_max"] == pytest.approx(3.0) and got["eig_min"] == pytest.approx(-1.0)
    assert got["spectral_norm"] == pytest.approx(3.0)


def test_matrix_metrics_survive_float32_underflow():
    """Entries near 1e-30 cannot be squared in float32; the ratios still come out right."""
    m = torch.diag(torch.tensor([2e-30, 1e-30, -1e-30], dtype=torch.float32))
    got = matrix_metrics(m)
    assert got["trace_ratio"] == pytest.approx(2 / math.sqrt(6), rel=1e-6)
    assert got["eig_max"] == pytest.approx(2e-30, rel=1e-6)


def test_matrix_metrics_nonfinite_and_zero():
    assert all(
        math.isnan(v) for v in matrix_metrics(torch.tensor([[math.inf, 0], [0, 1.0]])).values()
    )
    zero = matrix_metrics(torch.zeros(3, 3))
    assert math.isnan(zero["trace_ratio"]) and zero["spectral_norm"] == 0.0


def test_measure_reports_every_metric_and_flags_overflow():
    model, params, x, y = tiny_case("lenet300100", "bias")
    proj = sparse_projection(count_params(params), 6, torch.Generator().manual_seed(0))
    row, ratios = measure(Problem(model, params, x, y, 1.0, proj))
    assert not row["nonfinite"]
    for m in ("hessian", "gterm", "hterm"):
        for metric in ("trace_ratio", "frac_pos", "eig_max", "eig_min", "spectral_norm"):
            assert math.isfinite(row[f"{m}_{metric}"])
    assert set(ratios) == set(params)
    huge = {k: v * 1e120 for k, v in params.items()}  # logits ~ 1e360: overflow
    row, _ = measure(Problem(model, huge, x, y, 1.0, proj))
    assert row["nonfinite"]
    assert math.isnan(row["hessian_trace_ratio"])


@pytest.mark.parametrize("architecture", ["lenet300100", "lenet5"])
def test_measure_with_its_shared_pass_equals_the_stand_alone_calls(architecture):
    """measure() hands one forward pass, gradient and dense R to projected_hessian and
    projected_jacobian; every method pair gives the metrics of the stand-alone calls."""
    model, params, x, y = tiny_case(architecture, "residual")
    proj = sparse_projection(count_params(params), 7, torch.Generator().manual_seed(5))
    problem = Problem(model, params, x, y, 0.7, proj)
    h = projected_hessian(problem)
    g = gauss_newton(projected_jacobian(problem), forward(model, params, x), 0.7)
    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    grads = torch.autograd.grad(problem.loss(leaves), list(leaves.values()))
    expected = {
        **{f"hessian_{k}": v for k, v in matrix_metrics(h).items()},
        **{f"gterm_{k}": v for k, v in matrix_metrics(g).items()},
        **{f"hterm_{k}": v for k, v in matrix_metrics(h - g).items()},
        "grad_norm": torch.linalg.norm(torch.cat([t.reshape(-1) for t in grads])).item(),
        "loss": problem.loss(params).item(),
    }
    for hvp in ("loop", "vmap"):
        for jvp in ("loop", "sparse", "vmap"):
            row, _ = measure(problem, hvp, jvp)
            for key, value in expected.items():
                assert row[key] == pytest.approx(value, rel=1e-10, abs=1e-14), (hvp, jvp, key)


def test_sparse_jacobian_falls_back_for_shared_and_batched_linear_layers():
    """The sparse J R method takes a linear layer that runs twice (shared weights) or on a
    3-d input through the general path, and stays exact."""

    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = torch.nn.Linear(6, 6)
            self.shared = torch.nn.Linear(6, 6)
            self.head = torch.nn.Linear(12, 3, bias=False)

        def forward(self, x):  # x: (N, 2, 6)
            h = torch.tanh(self.inner(x))  # a linear layer on a 3-d input
            h = torch.tanh(self.shared(torch.tanh(self.shared(h))))  # runs twice
            return self.head(h.flatten(1))

    model = Odd().double()
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    x = torch.randn(5, 2, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    proj = sparse_projection(count_params(params), 5, torch.Generator().manual_seed(1))

    problem = Problem(model, params, x, None, 1.0, proj)
    ref = projected_jacobian(problem, "loop")
    sparse = projected_jacobian(problem, "sparse")
    assert _rel(sparse, ref) <= 1e-13


def test_hterm_below_the_dtype_rounding_is_nan_not_a_number_made_of_rounding():
    """LayerNorm + joint scaling at tiny alpha: G carries all but 5e-7 of H. float32 gave
    an H-term Tr/||.||_F of 0.44 against 0.034 in float64; it is now reported as NaN with
    hterm_resolved = False, while H and G keep their (correct) values."""
    from goldilocks.grid import alpha_and_temperature
    from goldilocks.scaling import scale_params

    model, params, x, y = tiny_case("lenet300100", "combined")
    proj = sparse_projection(count_params(params), 6, torch.Generator().manual_seed(0))

    def cell(scale, dtype):
        alpha, temperature = alpha_and_temperature("joint", scale, "lenet300100", "combined")
        theta = scale_params({k: v.to(dtype) for k, v in params.items()}, alpha)
        return measure(Problem(model, theta, x.to(dtype), y, temperature, proj))[0]

    r64, r32 = cell(1e-9, torch.float64), cell(1e-9, torch.float32)
    assert r64["hterm_resolved"] and math.isfinite(r64["hterm_trace_ratio"])
    assert not r32["hterm_resolved"] and not r32["nonfinite"]
    assert all(
        math.isnan(v) for k, v in r32.items() if k.startswith("hterm_") and k[6:] != "resolved"
    )
    assert r32["hessian_trace_ratio"] == pytest.approx(r64["hessian_trace_ratio"], abs=1e-5)
    assert r32["gterm_trace_ratio"] == pytest.approx(r64["gterm_trace_ratio"], abs=1e-5)
    # Where the H-term is a fair share of H, float32 resolves it and matches float64.
    ok32, ok64 = cell(1e-3, torch.float32), cell(1e-3, torch.float64)
    assert ok32["hterm_resolved"]
    assert ok32["hterm_trace_ratio"] == pytest.approx(ok64["hterm_trace_ratio"], abs=1e-3)


def test_unknown_methods_name_their_config_key():
    model, params, x, y = tiny_case("lenet300100", "bias")
    proj = sparse_projection(count_params(params), 4, torch.Generator().manual_seed(0))
    problem = Problem(model, params, x, y, 1.0, proj)
    with pytest.raises(ValueError, match=r"curvature\.jvp_method: unknown value 'forward'"):
        measure(problem, jvp_method="forward")
    with pytest.raises(ValueError, match=r"curvature\.hvp_method: unknown value 'batched'"):
        measure(problem, "batched")
    with pytest.raises(ValueError, match=r"curvature\.hvp_method: unknown value 'batched'"):
        projected_hessian(problem, "batched")


def test_auto_methods_follow_the_device_and_the_model():
    """auto: H by the reverse loop on the CPU, vmap on a GPU; J R by the sparse reverse pass
    for MLPs on the CPU, forward-mode vmap for convnets and on a GPU (docs/performance.md,
    "The curvature engine: cost")."""
    from goldilocks.models import build_model, init_params

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    mlp = init_params(build_model("lenet300100", "bias", (1, 28, 28), 10), torch.Generator())
    conv = init_params(build_model("lenet5", "bias", (3, 32, 32), 10), torch.Generator())
    assert resolve_methods("auto", "auto", cpu, mlp) == ("loop", "sparse")
    assert resolve_methods("auto", "auto", cpu, conv) == ("loop", "vmap")
    assert resolve_methods("auto", "auto", gpu, mlp) == ("vmap", "vmap")
    assert resolve_methods("vmap", "loop", cpu, conv) == ("vmap", "loop")


def _real_module(model, params, temperature):
    """A materialised copy of ``model`` holding ``params``, logits divided by T."""
    real = model.to_empty(device="cpu").double()
    with torch.no_grad():
        for name, p in real.named_parameters():
            p.copy_(params[name])

    class Tempered(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = real

        def forward(self, x):
            return self.net(x) / temperature

    return Tempered()


@pytest.mark.parametrize("architecture", list(TINY))
def test_against_curvlinops(architecture, variant):
    """Independent oracle: curvlinops' Hessian and GGN operators (T folded into the model).

    Never skipped: without curvlinops (requirements-dev.txt, which setup.sh installs) it
    fails, so CI (.ci/run) cannot pass without the oracle having run."""
    try:
        import curvlinops
    except ImportError as err:
        pytest.fail(
            f"the independent oracle needs curvlinops-for-pytorch ({err}): "
            "pip install -r requirements-dev.txt (setup.sh does)"
        )
    from goldilocks.models import build_model

    temperature = 0.7
    _, params, x, y = tiny_case(architecture, variant)
    shape, widths = TINY[architecture]
    model = build_model(architecture, variant, shape, 3, **widths)
    proj = sparse_projection(count_params(params), 8, torch.Generator().manual_seed(5))
    r = proj.dense().T  # (P, d)
    problem = Problem(model, params, x, y, temperature, proj)
    ours_h = projected_hessian(problem)
    ours_g = gauss_newton(projected_jacobian(problem), forward(model, params, x), temperature)

    module = _real_module(
        build_model(architecture, variant, shape, 3, **widths), params, temperature
    )
    args = (module, torch.nn.CrossEntropyLoss(), list(module.parameters()), [(x, y)])
    ref_h = r.T @ (curvlinops.HessianLinearOperator(*args) @ r)
    ref_g = r.T @ (curvlinops.GGNLinearOperator(*args) @ r)
    assert _rel(ours_h, ref_h) <= 1e-12
    assert _rel(ours_g, ref_g) <= 1e-12
    assert _rel(ours_h - ours_g, ref_h - ref_g) <= 1e-10


def test_concurrent_cells_in_threads_match_sequential():
    """Jobs run as threads of one process: cells computed at once give the sequential numbers.

    Each task builds its own module, as every job does (``functional_call`` swaps a
    module's parameters, so a module must not be shared between threads); every method
    pair, ``vmap`` (forward mode) serialised by FORWARD_AD_LOCK.
    """
    from concurrent.futures import ThreadPoolExecutor

    specs = [(0, "bias"), (1, "combined"), (2, "layernorm"), (3, "residual")]

    def cell(i: int, methods: tuple[str, str]):
        seed, variant = specs[i % len(specs)]
        model, params, x, y = tiny_case("lenet5", variant, seed=seed)
        proj = sparse_projection(count_params(params), 6, torch.Generator().manual_seed(seed))
        return measure(Problem(model, params, x, y, 1.0, proj), *methods)[0]

    for methods in [("loop", "loop"), ("loop", "sparse"), ("loop", "vmap"), ("vmap", "vmap")]:
        sequential = [cell(i, methods) for i in range(len(specs))]
        with ThreadPoolExecutor(max_workers=4) as pool:
            concurrent = list(pool.map(lambda i, m=methods: cell(i, m), range(12)))
        for i, row in enumerate(concurrent):
            assert row == sequential[i % len(specs)], methods


def test_a_subspace_larger_than_the_model_is_one_line():
    from goldilocks.curvature import SubspaceTooLarge

    with pytest.raises(SubspaceTooLarge) as err:
        sparse_projection(12, 13, torch.Generator().manual_seed(0))
    message = str(err.value)
    assert err.value.user_facing and isinstance(err.value, ValueError) and "\n" not in message
    assert message == (
        "config key curvature.subspace_dim: d = 13 exceeds the model's parameter count P = 12"
    )
