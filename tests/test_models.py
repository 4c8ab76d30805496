"""The built models: parameter counts by hand, shapes, initialisation."""

import math

import pytest
import torch

from goldilocks.models import build_model, count_params, forward, init_params
from goldilocks.variants import DATASET_SHAPES, PAPER_PAIRS, VARIANTS

# P by hand from the layer table (docs/method.md section 3): weights, + biases for bias
# and combined(_affine), + a gain and a shift per LayerNorm feature (per channel for conv
# maps) for the *_affine variants, whose LayerNorm follows every weight layer but the head.
SKIP = ("residual", "combined", "combined_affine")
BIAS = ("bias", "combined", "combined_affine")
AFFINE = ("layernorm_affine", "combined_affine")


def _p(variant: str, weights: int, biases: int, normed: int) -> int:
    return weights + biases * (variant in BIAS) + 2 * normed * (variant in AFFINE)


def _lenet300100_p(variant: str, flat: int = 784) -> int:
    if variant in SKIP:
        weights = flat * 300 + 300 * 100 + 100 * 300 + 300 * 10
        return _p(variant, weights, 300 + 100 + 300 + 10, 300 + 100 + 300)
    weights = flat * 300 + 300 * 100 + 100 * 10
    return _p(variant, weights, 300 + 100 + 10, 300 + 100)


def _lenet5_p(variant: str, channels: int = 3, flat: int = 16 * 5 * 5) -> int:
    convs = channels * 6 * 25 + 6 * 16 * 25
    if variant in SKIP:
        weights = convs + flat * 120 + 120 * 84 + 84 * 120 + 120 * 10
        return _p(variant, weights, 6 + 16 + 120 + 84 + 120 + 10, 6 + 16 + 120 + 84 + 120)
    weights = convs + flat * 120 + 120 * 84 + 84 * 10
    return _p(variant, weights, 6 + 16 + 120 + 84 + 10, 6 + 16 + 120 + 84)


def _resnet4_p(variant: str, channels: int) -> int:
    weights = channels * 16 * 9 + 2 * 16 * 16 * 9 + 16 * 10
    return _p(variant, weights, 16 + 16 + 16 + 10, 16 + 16 + 16)


#: (architecture, dataset) -> variant -> P, and docs/method.md's numbers spelled out.
EXPECTED_P = {
    ("lenet300100", "fmnist"): _lenet300100_p,
    ("lenet5", "cifar10"): _lenet5_p,
    ("resnet4", "fmnist"): lambda v: _resnet4_p(v, 1),
    ("resnet4", "cifar10"): lambda v: _resnet4_p(v, 3),
}
README_P = {
    ("lenet300100", "fmnist"): (266_200, 266_610, 298_200, 266_200, 298_910, 267_000, 300_310),
    ("lenet5", "cifar10"): (61_770, 62_006, 72_210, 61_770, 72_566, 62_222, 73_258),
    ("resnet4", "fmnist"): (4_912, 4_970, 4_912, 4_912, 4_970, 5_008, 5_066),
    ("resnet4", "cifar10"): (5_200, 5_258, 5_200, 5_200, 5_258, 5_296, 5_354),
}


@pytest.mark.parametrize("pair", PAPER_PAIRS, ids="_".join)
def test_parameter_counts(pair, variant):
    architecture, dataset = pair
    shape, classes = DATASET_SHAPES[dataset]
    model = build_model(architecture, variant, shape, classes)
    params = init_params(model, torch.Generator().manual_seed(0))
    assert count_params(params) == EXPECTED_P[pair](variant)
    assert count_params(params) == README_P[pair][VARIANTS.index(variant)]


def test_lenet5_adapts_to_28x28_inputs():
    """LeNet-5 on a 1x28x28 dataset (synthetic): 16 x 4 x 4 = 256 features into fc1."""
    model = build_model("lenet5", "bias", (1, 28, 28), 10)
    params = init_params(model, torch.Generator().manual_seed(0))
    assert count_params(params) == _lenet5_p("bias", channels=1, flat=256)
    x = torch.zeros(2, 1, 28, 28, dtype=torch.float64)
    assert forward(model, params, x).shape == (2, 10)


def test_init_is_kaiming_and_biases_uniform():
    model = build_model("lenet300100", "bias", (1, 28, 28), 10)
    params = init_params(model, torch.Generator().manual_seed(0))
    assert params["fc1.weight"].std().item() == pytest.approx(math.sqrt(2 / 784), rel=0.02)
    assert params["fc1.bias"].abs().max().item() <= 0.1
    assert params["fc1.bias"].std().item() == pytest.approx(0.2 / math.sqrt(12), rel=0.15)


@pytest.mark.parametrize("variant", ["layernorm_affine", "combined_affine"])
def test_affine_layernorm_starts_at_gain_one_shift_zero_and_keeps_the_weights(variant):
    """gamma = 1, beta = 0 at initialisation; the weights and biases drawn are those of the
    variant without gain and shift (the affine parameters draw nothing)."""
    plain = variant.removesuffix("_affine")
    model = build_model("lenet5", variant, (3, 32, 32), 10)
    params = init_params(model, torch.Generator().manual_seed(4))
    base = init_params(
        build_model("lenet5", plain, (3, 32, 32), 10), torch.Generator().manual_seed(4)
    )
    gains = [n for n in params if n.endswith("ln.weight")]
    shifts = [n for n in params if n.endswith("ln.bias")]
    assert len(gains) == len(shifts) == (5 if variant == "combined_affine" else 4)
    assert all(torch.equal(params[n], torch.ones_like(params[n])) for n in gains)
    assert all(torch.equal(params[n], torch.zeros_like(params[n])) for n in shifts)
    assert params["conv1.ln.weight"].shape == (6,)  # per channel on conv maps
    for name, value in base.items():
        assert torch.equal(params[name], value), name


def test_alpha_leaves_the_gain_and_shift_alone_so_the_logits_stay_linear():
    from goldilocks.scaling import alpha_fixed, scale_params

    model = build_model("lenet300100", "combined_affine", (1, 28, 28), 10)
    params = init_params(model, torch.Generator().manual_seed(0))
    params["fc1.ln.weight"] = params["fc1.ln.weight"] * 1.7  # as after training
    params["fc1.ln.bias"] = params["fc1.ln.bias"] + 0.3
    fixed = alpha_fixed(model)
    assert fixed == {n for n in params if ".ln." in n}
    x = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def logits(alpha, keep):
        return forward(model, scale_params(params, alpha, keep), x)

    # At alpha >= 10 LayerNorm's eps is negligible: alpha x 1000 moves the logits x 1000 ...
    assert torch.allclose(logits(1e5, fixed), 1e3 * logits(1e2, fixed), rtol=1e-6)
    # Scaling the gain and shift too gives exponent 2 (exactly so without biases).
    model = build_model("lenet300100", "layernorm_affine", (1, 28, 28), 10)
    params = init_params(model, torch.Generator().manual_seed(0))
    assert torch.allclose(logits(1e5, ()), 1e6 * logits(1e2, ()), rtol=1e-6)
    assert not torch.allclose(logits(1e5, ()), 1e3 * logits(1e2, ()), rtol=0.5)
