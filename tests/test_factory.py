"""Registered models at run time: factory import, thread-safe initialisation, buffers,
the output-exponent check, and attention through the curvature engine."""

import contextlib
import copy
import functools
import threading
import time

import pytest
import torch
from conftest import in_threads
from test_curvature import _dense_references, _rel

from goldilocks import factory, initial
from goldilocks.curvature import (
    Problem,
    gauss_newton,
    projected_hessian,
    projected_jacobian,
    sparse_projection,
)
from goldilocks.io import load_tensors
from goldilocks.models import count_params, forward
from goldilocks.registered import register_models
from goldilocks.scaling import scale_params
from goldilocks.variants import describe

MODULE = '''
import time

import torch
from torch import nn


class Mlp(nn.Module):
    """784 -> 8 -> K; "plain" homogeneous (k = 2), "normed" with an affine LayerNorm
    (k = 1 when gamma and beta are exempt), "bn" with a BatchNorm (buffers; k = 3 when
    gamma and beta are scaled), "slow" sleeps between layers (threads interleave)."""

    def __init__(self, variant, in_shape, num_classes):
        super().__init__()
        c, h, w = in_shape
        self.fc = nn.Linear(c * h * w, 8, bias=False)
        if variant == "slow":
            for i in range(4):
                time.sleep(0.002)
                self.add_module(f"extra{i}", nn.Linear(8, 8, bias=False))
        self.norm = nn.LayerNorm(8) if variant == "normed" else nn.Identity()
        self.bn = nn.BatchNorm1d(8) if variant == "bn" else nn.Identity()
        self.head = nn.Linear(8, num_classes, bias=False)

    def forward(self, x):
        h = torch.relu(self.bn(self.norm(self.fc(x.flatten(1)))))
        return self.head(h)


class Attention(nn.Module):
    """Rows of the image as tokens: embedding, one Transformer encoder layer, mean pool."""

    def __init__(self, variant, in_shape, num_classes):
        super().__init__()
        self.embed = nn.Linear(in_shape[2], 4)
        self.block = nn.TransformerEncoderLayer(
            4, 2, dim_feedforward=4, dropout=0.0, batch_first=True,
            norm_first=variant == "preln",
        )
        self.head = nn.Linear(4, num_classes)

    def forward(self, x):
        h = self.block(self.embed(x[:, 0]))  # (N, rows, 4)
        return self.head(h.mean(dim=1))


def mlp(variant, in_shape, num_classes):
    return Mlp(variant, in_shape, num_classes)


def attention(variant, in_shape, num_classes):
    return Attention(variant, in_shape, num_classes)


def not_a_module(variant, in_shape, num_classes):
    return 42


def one_class_too_many(variant, in_shape, num_classes):
    return Mlp("plain", in_shape, num_classes + 1)


def cifar_only(variant, in_shape, num_classes):
    return Mlp("plain", (3, 32, 32), num_classes)  # ignores in_shape


def old_signature(variant):
    return Mlp(variant, (1, 28, 28), 10)


class DictOut(Mlp):
    def forward(self, x):
        return {"logits": super().forward(x)}


def dict_out(variant, in_shape, num_classes):
    return DictOut("plain", in_shape, num_classes)
'''

K = {"plain": 2, "normed": 1, "bn": 3, "slow": 2}
MODELS = {
    "testmlp": {
        "factory": "goldilocks_test_models:mlp",
        "alpha_exempt": ["norm.*"],
        "variants": {v: {"depth": 2, "output_exponent": k} for v, k in K.items()},
    },
    "testattn": {
        "factory": "goldilocks_test_models:attention",
        "variants": {v: {"depth": 4, "output_exponent": None} for v in ("postln", "preln")},
    },
    "testbroken": {
        "factory": "goldilocks_test_models:not_a_module",
        "variants": {"plain": {"depth": 2, "output_exponent": 2}},
    },
    "testwide": {
        "factory": "goldilocks_test_models:one_class_too_many",
        "variants": {"plain": {"depth": 2, "output_exponent": 2}},
    },
    "testcifar": {
        "factory": "goldilocks_test_models:cifar_only",
        "variants": {"plain": {"depth": 2, "output_exponent": 2}},
    },
    "testdict": {
        "factory": "goldilocks_test_models:dict_out",
        "variants": {"plain": {"depth": 2, "output_exponent": 2}},
    },
}


@pytest.fixture(scope="module", autouse=True)
def test_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("usermodels")
    (folder / "goldilocks_test_models.py").write_text(MODULE)
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(folder))
        register_models({"models": MODELS})
        yield folder


@pytest.fixture(scope="module")
def data():
    from goldilocks.data import prepare

    return prepare("synthetic", [], "unused")  # with the training set's mean and std


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "goldilocks_no_such_module:build",
            "models factory 'goldilocks_no_such_module:build': module "
            "'goldilocks_no_such_module' does not import (ModuleNotFoundError: No module "
            "named 'goldilocks_no_such_module')",
        ),
        (
            "goldilocks_test_models:nothing",
            "models factory 'goldilocks_test_models:nothing': {file} has no function 'nothing'",
        ),
    ],
)
def test_a_factory_that_does_not_import_is_one_line_naming_it(spec, message, test_models):
    with pytest.raises(factory.ModelError) as err:
        factory.load_factory(spec)
    file = test_models / "goldilocks_test_models.py"
    assert str(err.value) == message.format(file=file)
    assert err.value.user_facing


def test_a_module_that_raises_on_import_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "goldilocks_raising.py").write_text("import goldilocks_missing_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(factory.ModelError) as err:
        factory.load_factory("goldilocks_raising:build")
    assert str(err.value) == (
        "models factory 'goldilocks_raising:build': module 'goldilocks_raising' does not "
        "import (ModuleNotFoundError: No module named 'goldilocks_missing_dependency')"
    )


def test_a_factory_with_another_signature_is_one_line():
    register_models(
        {"models": {"testsig": {"factory": "goldilocks_test_models:old_signature",
                                "variants": {"plain": {"depth": 2, "output_exponent": 2}}}}}
    )  # fmt: skip
    try:
        with pytest.raises(factory.ModelError) as err:
            factory.build(describe("testsig", "plain"), (1, 28, 28), 10, "cpu")
    finally:
        register_models({"models": MODELS})
    assert str(err.value) == (
        "models factory 'goldilocks_test_models:old_signature': its signature "
        "old_signature(variant) cannot take (variant, in_shape, num_classes) (too many "
        "positional arguments)"
    )


def test_a_factory_must_return_a_module():
    with pytest.raises(factory.ModelError, match="returned int for variant 'plain'"):
        initial.draw_params("testbroken", "synthetic", "plain", 0)


def test_own_initialisation_from_the_seed():
    a, _ = initial.draw_params("testmlp", "synthetic", "plain", 0)
    b, _ = initial.draw_params("testmlp", "synthetic", "plain", 0)
    c, _ = initial.draw_params("testmlp", "synthetic", "plain", 1)
    assert list(a) == ["fc.weight", "head.weight"]
    assert all(v.dtype == torch.float64 for v in a.values())
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["fc.weight"], c["fc.weight"])
    # nn.Linear's own reset_parameters: kaiming_uniform(a=sqrt(5)), |w| <= 1/sqrt(fan_in).
    assert a["fc.weight"].abs().max() <= 784**-0.5
    assert a["fc.weight"].abs().max() > 0.9 * 784**-0.5


def test_threaded_initialisation_equals_serial_and_leaves_the_global_rng_alone():
    """Eight threads initialise at once (the factory sleeps between layers, so they
    interleave); each gets exactly what a serial draw gives. Without the lock they do not
    (the control below), so the test can fail."""
    seeds = list(range(8))
    serial = {s: initial.draw_params("testmlp", "synthetic", "slow", s)[0] for s in seeds}

    def threaded() -> dict[int, dict]:
        out, barrier = {}, threading.Barrier(len(seeds))

        def work(seed):
            barrier.wait()
            out[seed] = initial.draw_params("testmlp", "synthetic", "slow", seed)[0]

        assert in_threads([functools.partial(work, s) for s in seeds]) == [None] * len(seeds)
        return out

    def same(a, b):
        return all(torch.equal(a[k], b[k]) for k in a)

    state = torch.random.get_rng_state()
    got = threaded()
    assert all(same(got[s], serial[s]) for s in seeds)
    assert torch.equal(torch.random.get_rng_state(), state)  # restored for the caller
    # Control: the same without the lock mixes the seeds' draws.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(factory, "GLOBAL_RNG_LOCK", contextlib.nullcontext())
        unlocked = threaded()
    assert not all(same(unlocked[s], serial[s]) for s in seeds)


def test_buffers_travel_in_the_init_file(data, tmp_path):
    state = initial.draw("testmlp", "synthetic", "bn", 0, data, 16, 5)
    assert set(state.buffers) == {"bn.running_mean", "bn.running_var", "bn.num_batches_tracked"}
    assert state.buffers["bn.running_var"].dtype == torch.float64
    assert state.buffers["bn.num_batches_tracked"].dtype == torch.int64
    # Non-trivial statistics, so the forward pass shows whether they were used.
    state.buffers["bn.running_mean"].fill_(0.25)
    state.buffers["bn.running_var"].fill_(4.0)
    state.save(tmp_path / "init.pt")
    assert load_tensors(tmp_path / "init.pt")["format"] == initial.INIT_FORMAT == 2
    back = initial.InitialState.load(tmp_path / "init.pt")
    assert torch.equal(back.buffers["bn.running_var"], state.buffers["bn.running_var"])
    keys = ("testmlp", "synthetic", "bn", 1.0, 1.0, torch.device("cpu"))
    assert initial.problem(back, *keys, torch.float32).model.bn.running_var.dtype == torch.float32
    p = initial.problem(back, *keys, torch.float64)
    # The reference: the module built on the CPU, loaded with the saved state, eval mode.
    ref = factory.build(describe("testmlp", "bn"), (1, 28, 28), 10, "cpu")
    ref.load_state_dict({**state.params, **state.buffers})
    with torch.no_grad():
        expected = ref.double()(state.batch_x)
        got = forward(p.model, p.params, p.x)
    assert torch.allclose(got, expected, rtol=1e-12, atol=0)


def test_alpha_scales_all_but_the_exempt_parameters(data):
    state = initial.draw("testmlp", "synthetic", "normed", 0, data, 8, 4)
    p = initial.problem(
        state, "testmlp", "synthetic", "normed", 10.0, 1.0, torch.device("cpu"), torch.float64
    )
    for name, value in state.params.items():
        factor = 1.0 if name.startswith("norm.") else 10.0
        assert torch.equal(p.params[name], value * factor), name


def test_figure_3_kl_leaves_the_exempt_parameters_alone(data):
    """The KL stage scales a registered model as its cells do: the ``alpha_exempt``
    parameters stay, everything else is times alpha (checked against a direct forward)."""
    import torch.nn.functional as F

    from goldilocks.output_scaling import pair_table

    state = initial.draw("testmlp", "synthetic", "normed", 0, data, 8, 4)
    scales = {"log10_min": -1.0, "log10_max": 1.0, "num": 3}
    table = pair_table("testmlp", "synthetic", {("normed", 0): state}, scales)
    model = initial.model_of("testmlp", "synthetic", "normed", state.buffers)
    exempt = {name for name in state.params if name.startswith("norm.")}
    assert exempt and exempt != set(state.params)
    x = state.batch_x.double()

    def kl_of(alpha, fixed):
        log_p = F.log_softmax(alpha * forward(model, state.params, x), dim=1)
        log_q = F.log_softmax(forward(model, scale_params(state.params, alpha, fixed), x), dim=1)
        return (log_p.exp() * (log_p - log_q)).sum(dim=1).clamp_min(0.0).mean().item()

    for alpha, kl in zip(table["alpha"], table["kl"], strict=True):
        assert kl == pytest.approx(kl_of(alpha, exempt), rel=1e-9, abs=1e-15), alpha
        if alpha != 1.0:  # control: scaling the exempt parameters too gives another KL
            assert abs(kl - kl_of(alpha, ())) > 1e-6, alpha


@pytest.mark.parametrize("variant", list(K))
def test_measured_output_exponent(data, variant):
    state = initial.draw("testmlp", "synthetic", variant, 0, data, 16, 4)
    measured = initial.check_output_exponent(state, "testmlp", "synthetic", variant)
    assert abs(measured - K[variant]) <= 1e-3
    # Built-ins are not checked here (tests/test_variants.py measures them).
    lenet = initial.draw("lenet300100", "synthetic", "bias", 0, data, 8, 4)
    assert initial.check_output_exponent(lenet, "lenet300100", "synthetic", "bias") is None


def test_a_wrong_declared_exponent_is_one_line(data):
    models = copy.deepcopy(MODELS)
    models["testmlp"]["variants"]["normed"]["output_exponent"] = 2
    register_models({"models": models})
    try:
        state = initial.draw("testmlp", "synthetic", "normed", 0, data, 16, 4)
        with pytest.raises(factory.ModelError) as err:
            initial.check_output_exponent(state, "testmlp", "synthetic", "normed")
    finally:
        register_models({"models": MODELS})
    assert str(err.value) == (
        "model testmlp, variant normed: declared output_exponent 2, measured 1.00 (slope of "
        "log||f|| against log alpha at alpha = 10^3..10^5 in float64, tolerance 0.05); fix "
        "models.testmlp.variants.normed.output_exponent (null if no single power holds)"
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "testwide",
            "model testwide, variant plain: forward on a batch of shape (8, 1, 28, 28) gives "
            "logits of shape (8, 11), expected (8, 10) (N, num_classes)",
        ),
        (
            "testcifar",
            "model testcifar, variant plain: forward on a batch of shape (8, 1, 28, 28) failed "
            "(RuntimeError: mat1 and mat2 shapes cannot be multiplied (8x784 and 3072x8)); the "
            "factory is called as (variant, in_shape, num_classes) = ('plain', (1, 28, 28), 10)",
        ),
        (
            "testdict",
            "model testdict, variant plain: forward on a batch of shape (8, 1, 28, 28) returns "
            "a dict, expected a tensor of logits (8, 10) (N, num_classes)",
        ),
    ],
)
def test_a_model_whose_logits_are_not_n_by_classes_is_one_line(data, name, message):
    """An extra output would train silently as an 11-way softmax on 10 classes; a model
    built for another input fails inside torch: both stop the init job with one line."""
    state = initial.draw(name, "synthetic", "plain", 0, data, 8, 4)
    with pytest.raises(factory.ModelError) as err:
        initial.check_output_exponent(state, name, "synthetic", "plain")
    assert str(err.value) == message


def test_the_window_moves_down_where_alpha_to_the_k_would_overflow():
    assert factory.exponent_window(None) == (3.0, 5.0)
    assert factory.exponent_window(10) == (3.0, 5.0)
    assert factory.exponent_window(100) == (0.5, 2.5)


@pytest.fixture
def one_thread():
    """One torch thread (tiny tensors: more threads only spin on a loaded machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("variant", ["postln", "preln"])
def test_attention_hr_and_jr_match_a_dense_float64_reference(variant, one_thread):
    """nn.TransformerEncoderLayer through every H R and J R method: equal to R^T H R and
    R^T G R from a dense float64 Hessian (PyTorch's fused attention alone has neither a
    double backward nor a forward-mode derivative on the CPU; the control shows it)."""
    shape, description = (1, 3, 3), describe("testattn", variant)
    params, buffers = factory.draw_params(description, shape, 3, seed=0)
    model = factory.model_for(description, shape, 3, buffers)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, *shape, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (6,), generator=g)
    proj = sparse_projection(count_params(params), 6, torch.Generator().manual_seed(3))
    r = proj.dense().T
    dense_h, dense_g = _dense_references(model, params, x, y, 0.7)
    problem = Problem(model, params, x, y, 0.7, proj)
    for method in ("loop", "vmap"):
        assert _rel(projected_hessian(problem, method), r.T @ dense_h @ r) <= 1e-10, method
    for method in ("loop", "sparse", "vmap"):
        jr = projected_jacobian(problem, method)
        gn = gauss_newton(jr, forward(model, params, x), 0.7)
        assert _rel(gn, r.T @ dense_g @ r) <= 1e-10, method
    # Control: the same module without math attention has no double backward on the CPU.
    plain = torch.nn.TransformerEncoderLayer(4, 2, 4, dropout=0.0, batch_first=True).double()
    plain.eval()
    h = torch.randn(2, 3, 4, dtype=torch.float64)
    leaves = {k: v.detach().requires_grad_() for k, v in plain.named_parameters()}
    out = torch.func.functional_call(plain, leaves, (h,)).square().sum()
    grads = torch.autograd.grad(out, list(leaves.values()), create_graph=True)
    with pytest.raises(RuntimeError, match=r"derivative for .* is not implemented"):
        torch.autograd.grad(grads[0].sum(), list(leaves.values()), allow_unused=True)


def test_math_attention_is_thread_safe_and_restores_the_switches():
    """Two threads in and out of math attention at once: inside, only math is on; after
    the last one leaves, the switches are as before."""
    before = (torch.backends.cuda.flash_sdp_enabled(), torch.backends.mha.get_fastpath_enabled())
    inside = []

    def work():
        for _ in range(50):
            with factory.math_attention():
                time.sleep(0.0005)
                inside.append(
                    not torch.backends.cuda.flash_sdp_enabled()
                    and torch.backends.cuda.math_sdp_enabled()
                    and not torch.backends.mha.get_fastpath_enabled()
                )

    assert in_threads([work] * 3) == [None] * 3  # no thread raised
    assert len(inside) == 150 and all(inside)
    after = (torch.backends.cuda.flash_sdp_enabled(), torch.backends.mha.get_fastpath_enabled())
    assert after == before == (True, True)


def test_registered_model_scaling_matches_scale_params(data):
    """problem() scales by scale_params with the exempt names, nothing else."""
    state = initial.draw("testmlp", "synthetic", "plain", 0, data, 8, 4)
    p = initial.problem(
        state, "testmlp", "synthetic", "plain", 3.0, 1.0, torch.device("cpu"), torch.float64
    )
    expected = scale_params(state.params, 3.0)
    assert all(torch.equal(p.params[k], expected[k]) for k in expected)


def test_figures_order_a_models_variants_by_the_registry():
    """Columns of figures 1, 2, 4-7: the registry's order (the config's, for a registered
    model), not the alphabet; a variant the registry does not know comes last."""
    import pandas as pd

    from goldilocks.figures.style import variants_of

    frame = pd.DataFrame({"variant": ["slow", "bn", "plain", "normed", "zzz", "homogeneous"]})
    assert variants_of(frame) == ["homogeneous", "plain", "normed", "bn", "slow", "zzz"]
