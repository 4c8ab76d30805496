"""The output-scaling KL of figure 3 on tiny models (float64)."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_case

from goldilocks.output_scaling import output_scaling_table, pair_table, scaled_output_kl


@pytest.mark.parametrize("variant", ["layernorm", "combined"])
def test_linear_regime_and_eps_regime(variant):
    model, params, x, _ = tiny_case("lenet300100", variant, n=16)
    table = output_scaling_table(model, params, x, [1e-8, 1e-3, 1.0, 1e2, 1e4])
    by_alpha = table.set_index("alpha")
    assert (table[["kl", "kl_max", "logit_rel_error"]] >= 0).all().all()
    assert by_alpha.loc[1.0, "kl"] == 0.0 and by_alpha.loc[1.0, "logit_rel_error"] == 0.0
    # Large alpha: LayerNorm cancels the scale, the logits are alpha f up to eps/var.
    assert by_alpha.loc[1e4, "logit_rel_error"] < 1e-3
    # Tiny alpha: eps dominates the variance, the logits no longer follow alpha f.
    assert by_alpha.loc[1e-8, "logit_rel_error"] > 0.5
    assert by_alpha.loc[1e-3, "kl"] > 1e3 * max(by_alpha.loc[1e4, "kl"], 1e-30)
    assert (table["kl_max"] >= table["kl"]).all()


def test_homogeneous_control_has_the_depth_power():
    # Without LayerNorm f(alpha theta) = alpha^L f(theta): the linear prediction is off by
    # alpha^(L-1) - 1 in relative terms, and the KL is far from 0 at large alpha.
    model, params, x, _ = tiny_case("lenet300100", "homogeneous", n=16)
    out = scaled_output_kl(model, params, x, 10.0)
    assert out["logit_rel_error"] == pytest.approx(10.0**2 - 1, rel=1e-10)
    assert out["kl"] > 1e-3


def test_computed_in_float64_from_float32_inputs():
    model, params, x, _ = tiny_case("lenet300100", "layernorm", n=8)
    low = {k: v.to(torch.float32) for k, v in params.items()}
    widened = {k: v.to(torch.float64) for k, v in low.items()}
    for alpha in (1e-6, 1e3):
        got = scaled_output_kl(model, low, x.to(torch.float32), alpha)
        assert got == scaled_output_kl(model, widened, x.to(torch.float32).double(), alpha)


def test_pair_table_has_one_row_per_variant_seed_and_alpha():
    from goldilocks.data import prepare
    from goldilocks.initial import draw

    data = prepare("synthetic", [], "unused")
    states = {
        (v, s): draw("lenet300100", "synthetic", v, s, data, 8, 4)
        for v in ("layernorm", "combined")
        for s in (0, 1)
    }
    spec = {"log10_min": -1, "log10_max": 1, "num": 3, "times_depth": True}
    table = pair_table("lenet300100", "synthetic", states, spec)
    assert list(table.columns[:4]) == ["architecture", "dataset", "variant", "seed"]
    # L = 3 (layernorm) and 4 (combined): alphas 10^{-3, 0, 3} and 10^{-4, 0, 4}.
    assert len(table) == 2 * 2 * 3 and (table["batch_size"] == 8).all()
    assert sorted(set(table[table["variant"] == "combined"]["alpha"])) == [1e-4, 1.0, 1e4]


def test_small_alpha_table_measures_m_and_the_input_dependent_share():
    """Declared m against the measured slope at alpha = 1e-9..1e-7 for every variant
    (lenet300100: homogeneous 3, bias 1, residual 2, layernorm 3, combined 1), and the
    retained input-dependent share: 1 for homogeneous, of order 1 for residual and
    LayerNorm, near 0 where a bias dominates."""
    from goldilocks.data import prepare
    from goldilocks.initial import draw
    from goldilocks.output_scaling import small_alpha_table

    data = prepare("synthetic", [], "unused")
    names = ("homogeneous", "bias", "residual", "layernorm", "combined")
    states = {(v, 0): draw("lenet300100", "synthetic", v, 0, data, 16, 4) for v in names}
    table = small_alpha_table("lenet300100", "synthetic", states, {v: [1e-3, 1.0] for v in names})
    assert len(table) == len(names) * (2 + 5) and table["window"].sum() == len(names) * 5
    m = table.groupby("variant")[["declared_m", "measured_m"]].first()
    assert m["declared_m"].to_dict() == dict(zip(names, (3, 1, 2, 3, 1), strict=True))
    assert (m["measured_m"] - m["declared_m"]).abs().max() < 0.02
    at = table[table["alpha"] == 1e-3].set_index("variant")["input_share_rel"]
    # homogeneous: the same function times alpha^L (exactly 1); residual and LayerNorm:
    # another function (the identity path, the eps regime) of comparable input dependence
    assert at["homogeneous"] == pytest.approx(1.0)
    assert at["residual"] > 0.5 and at["layernorm"] > 0.5
    assert at["bias"] < 1e-3
    at_one = table[table["alpha"] == 1.0]["input_share_rel"]
    assert at_one.to_numpy() == pytest.approx(1.0)
