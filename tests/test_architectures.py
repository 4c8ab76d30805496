"""The torch-free table (L, 𝓛, k) against the built models, and parameter counts."""

import math

import numpy as np
import pytest
import torch

from goldilocks.architectures import (
    ARCHITECTURES,
    DATASET_SHAPES,
    VARIANTS,
    depth,
    output_exponent,
)
from goldilocks.models import build_model, count_params, forward, init_params
from goldilocks.scaling import scale_params

# P by hand from the layer table in the README (weights, + biases for bias/combined).
LENET300100_P = {
    "homogeneous": 784 * 300 + 300 * 100 + 100 * 10,
    "bias": 784 * 300 + 300 * 100 + 100 * 10 + 300 + 100 + 10,
    "residual": 784 * 300 + 300 * 100 + 100 * 300 + 300 * 10,
    "layernorm": 784 * 300 + 300 * 100 + 100 * 10,
    "combined": 784 * 300 + 300 * 100 + 100 * 300 + 300 * 10 + 300 + 100 + 300 + 10,
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_lenet300100_parameter_counts(variant):
    model = build_model("lenet300100", variant, (1, 28, 28), 10)
    params = init_params(model, torch.Generator().manual_seed(0))
    assert count_params(params) == LENET300100_P[variant]


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


@pytest.mark.parametrize("variant", VARIANTS)
def test_output_exponent_measured_as_slope(variant):
    """log||f|| against log alpha at large alpha has slope k (LeNet-300-100, float64)."""
    model = build_model("lenet300100", variant, (1, 28, 28), 10)
    params = init_params(model, torch.Generator().manual_seed(0))
    x = torch.randn(32, 1, 28, 28, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    k = output_exponent("lenet300100", variant)
    slope = _slope(model, params, x, [1e3, 1e4, 1e5])
    assert slope == pytest.approx(k, abs=0.02)
    if variant == "homogeneous":  # exact at every scale
        assert _slope(model, params, x, [1e-2, 1.0, 1e2]) == pytest.approx(k, abs=1e-9)


def test_residual_small_alpha_exponent_is_L_minus_residual_depth():
    """At small alpha the identity path dominates: logits scale as alpha^(L - 𝓛)."""
    model = build_model("lenet300100", "residual", (1, 28, 28), 10)
    params = init_params(model, torch.Generator().manual_seed(0))
    x = torch.randn(32, 1, 28, 28, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    d = depth("lenet300100", "residual")
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
