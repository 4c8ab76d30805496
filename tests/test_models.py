"""The built models: parameter counts by hand, shapes, initialisation."""

import math

import pytest
import torch

from goldilocks.models import build_model, count_params, forward, init_params
from goldilocks.variants import DATASET_SHAPES, PAPER_PAIRS, VARIANTS


# P by hand from the layer table (docs/method.md section 3): weights, + biases for bias/combined.
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


#: (architecture, dataset) -> variant -> P, and docs/method.md's numbers spelled out.
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


def test_init_is_kaiming_and_biases_uniform():
    model = build_model("lenet300100", "bias", (1, 28, 28), 10)
    params = init_params(model, torch.Generator().manual_seed(0))
    assert params["fc1.weight"].std().item() == pytest.approx(math.sqrt(2 / 784), rel=0.02)
    assert params["fc1.bias"].abs().max().item() <= 0.1
    assert params["fc1.bias"].std().item() == pytest.approx(0.2 / math.sqrt(12), rel=0.15)
