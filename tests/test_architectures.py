"""The torch-free table (L, 𝓛, k) against the built models, and parameter counts."""

import math

import numpy as np
import pytest
import torch

from goldilocks.architectures import (
    ARCHITECTURES,
    DATASET_SHAPES,
    PAPER_PAIRS,
    VARIANTS,
    depth,
    output_exponent,
)
from goldilocks.models import build_model, count_params, forward, init_params
from goldilocks.scaling import scale_params


# P by hand from the README's layer table: weights, + biases for bias/combined.
def _lenet300100_p(variant: str, flat: int = 784) -> int:
    if variant in ("residual", "combined"):
        weights = flat * 300 + 300 * 100 + 100 * 300 + 300 * 10
        biases = 300 + 100 + 300 + 10
    else:
        weights = flat * 300 + 300 * 100 + 100 * 10
        biases = 300 + 100 + 10
    return weights + (biases if variant in ("bias", "combined") else 0)


def _lenet5_p(variant: str, channels: int = 3, flat: int = 16 * 5 * 5) -> int:
    convs = channels * 6 * 25 + 6 * 16 * 25
    if variant in ("residual", "combined"):
        weights = convs + flat * 120 + 120 * 84 + 84 * 120 + 120 * 10
        biases = 6 + 16 + 120 + 84 + 120 + 10
    else:
        weights = convs + flat * 120 + 120 * 84 + 84 * 10
        biases = 6 + 16 + 120 + 84 + 10
    return weights + (biases if variant in ("bias", "combined") else 0)


def _resnet4_p(variant: str, channels: int) -> int:
    weights = channels * 16 * 9 + 2 * 16 * 16 * 9 + 16 * 10
    biases = 16 + 16 + 16 + 10
    return weights + (biases if variant in ("bias", "combined") else 0)


#: (architecture, dataset) -> variant -> P, and the README's numbers spelled out.
EXPECTED_P = {
    ("lenet300100", "fmnist"): _lenet300100_p,
    ("lenet5", "cifar10"): _lenet5_p,
    ("resnet4", "fmnist"): lambda v: _resnet4_p(v, 1),
    ("resnet4", "cifar10"): lambda v: _resnet4_p(v, 3),
}
README_P = {
    ("lenet300100", "fmnist"): (266_200, 266_610, 298_200, 266_200, 298_910),
    ("lenet5", "cifar10"): (61_770, 62_006, 72_210, 61_770, 72_566),
    ("resnet4", "fmnist"): (4_912, 4_970, 4_912, 4_912, 4_970),
    ("resnet4", "cifar10"): (5_200, 5_258, 5_200, 5_200, 5_258),
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


def _weight_layers(model) -> list[str]:
    return [n for n, _ in model.named_parameters() if n.endswith("weight")]


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_depth_table_matches_model_structure(architecture, variant):
    dataset = "fmnist" if architecture == "lenet300100" else "cifar10"
    shape, classes = DATASET_SHAPES[dataset]
    model = build_model(architecture, variant, shape, classes)
    layers = _weight_layers(model)
    d = depth(architecture, variant)
    # Every weight layer lies on the longest path (the branch, where there is a skip).
    assert len(layers) == d.depth
    in_branch = [n for n in layers if n.startswith("block")] if model.has_skip else []
    assert len(in_branch) == d.residual_depth


def _slope(model, params, x, alphas) -> float:
    norms = [torch.linalg.norm(forward(model, scale_params(params, a), x)).item() for a in alphas]
    return float(np.polyfit(np.log(alphas), np.log(norms), 1)[0])


def _paper_case(architecture: str, variant: str, n: int = 8):
    """Full-size model of the paper (first dataset it is paired with), float64 batch."""
    dataset = next(d for a, d in PAPER_PAIRS if a == architecture)
    shape, classes = DATASET_SHAPES[dataset]
    model = build_model(architecture, variant, shape, classes)
    params = init_params(model, torch.Generator().manual_seed(0))
    x = torch.randn(n, *shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return model, params, x


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_output_exponent_measured_as_slope(architecture, variant):
    """log||f|| against log alpha at large alpha has slope k (float64)."""
    model, params, x = _paper_case(architecture, variant)
    k = output_exponent(architecture, variant)
    slope = _slope(model, params, x, [1e3, 1e4, 1e5])
    assert slope == pytest.approx(k, abs=0.02)
    if variant == "homogeneous":  # exact at every scale
        assert _slope(model, params, x, [1e-2, 1.0, 1e2]) == pytest.approx(k, abs=1e-9)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_residual_small_alpha_exponent_is_L_minus_residual_depth(architecture):
    """At small alpha the identity path dominates: logits scale as alpha^(L - 𝓛)."""
    model, params, x = _paper_case(architecture, "residual")
    d = depth(architecture, "residual")
    assert d.depth - d.residual_depth < output_exponent(architecture, "residual")
    assert _slope(model, params, x, [1e-5, 1e-4, 1e-3]) == pytest.approx(
        d.depth - d.residual_depth, abs=0.02
    )


def test_unknown_names_raise_naming_the_key():
    with pytest.raises(ValueError, match="architecture: unknown value 'vgg'"):
        depth("vgg", "bias")
    with pytest.raises(ValueError, match="variant: unknown value 'batchnorm'"):
        depth("lenet5", "batchnorm")


def test_init_is_kaiming_and_biases_uniform():
    model = build_model("lenet300100", "bias", (1, 28, 28), 10)
    params = init_params(model, torch.Generator().manual_seed(0))
    assert params["fc1.weight"].std().item() == pytest.approx(math.sqrt(2 / 784), rel=0.02)
    assert params["fc1.bias"].abs().max().item() <= 0.1
    assert params["fc1.bias"].std().item() == pytest.approx(0.2 / math.sqrt(12), rel=0.15)
