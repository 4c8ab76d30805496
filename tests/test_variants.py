"""The torch-free registry (switches, L, 𝓛, k) against the built models."""

import numpy as np
import pytest
import torch

from goldilocks.models import build_model, forward, init_params
from goldilocks.scaling import alpha_fixed, scale_params
from goldilocks.variants import (
    ARCHITECTURES,
    DATASET_SHAPES,
    PAPER_PAIRS,
    VARIANTS,
    Description,
    Variant,
    depth,
    describe,
    output_exponent,
    properties,
    register,
    variant_names,
)


def _weight_layers(model) -> list[str]:
    kinds = (torch.nn.Linear, torch.nn.Conv2d)
    return [n for n, m in model.named_modules() if isinstance(m, kinds)]


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
    fixed = alpha_fixed(model)  # an affine LayerNorm's gain and shift are not scaled
    norms = [
        torch.linalg.norm(forward(model, scale_params(params, a, fixed), x)).item() for a in alphas
    ]
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


def test_switches_are_read_from_the_registry_by_the_models():
    for variant in VARIANTS:
        switches = properties(variant)
        model = build_model("lenet300100", variant, (1, 28, 28), 10)
        assert (model.has_bias, model.has_skip, model.has_norm) == (
            switches.bias,
            switches.skip,
            switches.norm,
        )
        layers = [m for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
        assert all((m.bias is not None) == switches.bias for m in layers)
        assert any(".ln." in n for n, _ in model.named_parameters()) == switches.affine


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_small_alpha_exponent_measured_as_slope(architecture, variant):
    """log||f|| against log alpha at alpha = 1e-9..1e-7 has slope m (float64): L - 𝓛 for
    residual, 1 with a bias (combined included), L otherwise (LayerNorm in its eps regime)."""
    model, params, x = _paper_case(architecture, variant)
    d = describe(architecture, variant)
    expected = 1 if d.variant.bias else d.depth - d.residual_depth
    assert d.small_alpha_exponent == expected
    assert _slope(model, params, x, [1e-9, 1e-8, 1e-7]) == pytest.approx(expected, abs=0.02)


def test_skip_path_exponent_only_for_a_skip_without_layernorm():
    assert describe("lenet300100", "residual").skip_path_exponent == 2
    assert describe("resnet4", "residual").skip_path_exponent == 2
    for variant in ("homogeneous", "bias", "layernorm", "combined"):
        assert describe("lenet5", variant).skip_path_exponent is None


def test_the_registry_can_grow(monkeypatch):
    from goldilocks import variants

    monkeypatch.setattr(variants, "_REGISTRY", dict(variants._REGISTRY))
    wide = Description("widemlp", Variant("plain"), depth=5, residual_depth=0, output_exponent=5)
    register(wide)
    assert describe("widemlp", "plain") == wide
    assert "widemlp" in variants.architecture_names()
    assert variant_names("widemlp") == ("plain",)
    assert "plain" in variant_names() and "plain" not in variant_names("lenet5")
    with pytest.raises(ValueError, match="variant: unknown value 'plain'"):
        describe("lenet5", "plain")
