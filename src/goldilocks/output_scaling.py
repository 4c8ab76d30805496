"""Where the linear output scaling of LayerNorm networks breaks (paper Appendix E, figure 3;
docs/method.md section 6).

With LayerNorm after every hidden weight layer (no affine parameters), scaling all weights
and biases by alpha leaves every hidden activation unchanged, so the logits scale exactly
linearly: ``f_{alpha theta}(x) = alpha f_theta(x)``. That fails at small alpha, where the
pre-normalisation activations shrink until LayerNorm's ``eps`` (1e-5) dominates their
variance. The mismatch is measured as

    KL(alpha) = (1/N) sum_n KL( softmax(alpha f_theta(x_n)) || softmax(f_{alpha theta}(x_n)) )

and, scale-free, as ``||f_{alpha theta}(X) - alpha f_theta(X)||_F / ||alpha f_theta(X)||_F``.
Everything is computed in float64: in float32 the round-off of the linear regime would
hide the eps regime's onset. At ``alpha = 1`` both are exactly 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from goldilocks.models import forward
from goldilocks.scaling import alpha_fixed, scale_params

COLUMNS = ["alpha", "kl", "kl_max", "logit_rel_error"]


@torch.no_grad()
def scaled_output_kl(
    model: nn.Module,
    params: dict[str, Tensor],
    x: Tensor,
    alpha: float,
) -> dict[str, float]:
    """KL between the linearly predicted and the actual softmax output at ``alpha``.

    Args:
        model: a network of :mod:`goldilocks.models`, used functionally.
        params: its unscaled parameters ``theta`` (cast to float64 here).
        x: a batch of inputs ``(N, C, H, W)`` (cast to float64 here).
        alpha: the weight scale.

    Returns:
        ``kl``: batch mean of ``KL(softmax(alpha f_theta) || softmax(f_{alpha theta}))``
        (per-sample values clamped at 0 against round-off); ``kl_max``: its batch maximum;
        ``logit_rel_error``: ``||f_{alpha theta} - alpha f_theta||_F / ||alpha f_theta||_F``.
    """
    theta = {k: v.to(torch.float64) for k, v in params.items()}
    x = x.to(torch.float64)
    expected = alpha * forward(model, theta, x)  # (N, K)
    actual = forward(model, scale_params(theta, alpha, alpha_fixed(model)), x)  # (N, K)
    log_p, log_q = F.log_softmax(expected, dim=1), F.log_softmax(actual, dim=1)
    per_sample = (log_p.exp() * (log_p - log_q)).sum(dim=1).clamp_min(0.0)  # (N,)
    return {
        "kl": float(per_sample.mean()),
        "kl_max": float(per_sample.max()),
        "logit_rel_error": float(
            torch.linalg.norm(actual - expected) / torch.linalg.norm(expected)
        ),
    }


def output_scaling_table(
    model: nn.Module,
    params: dict[str, Tensor],
    x: Tensor,
    alphas: Iterable[float],
) -> pd.DataFrame:
    """:func:`scaled_output_kl` at every alpha: columns ``alpha, kl, kl_max, logit_rel_error``."""
    rows = [{"alpha": float(a), **scaled_output_kl(model, params, x, float(a))} for a in alphas]
    return pd.DataFrame(rows, columns=COLUMNS)


def pair_table(
    architecture: str, dataset: str, states: Mapping[tuple[str, int], object], scales: Mapping
) -> pd.DataFrame:
    """Figure 3's table of one pair: :func:`output_scaling_table` of every (variant, seed).

    Args:
        states: ``(variant, seed) -> InitialState`` (:mod:`goldilocks.initial`); each
            seed's curvature batch is the batch, its unscaled parameters the ``theta``.
        scales: the alpha grid spec (``curvature.scales.alpha_linear`` with
            ``figures.kl_num`` points), times ``L`` of each variant when the spec's
            ``times_depth`` is true.

    Returns:
        Columns ``architecture, dataset, variant, seed``, :data:`COLUMNS` and
        ``batch_size``, one row per (variant, seed, alpha).
    """
    from goldilocks.grid import log_grid
    from goldilocks.initial import model_of
    from goldilocks.variants import describe

    frames = []
    for (variant, seed), state in states.items():
        alphas = log_grid(scales, describe(architecture, variant).depth)
        model = model_of(architecture, dataset, variant, state.buffers)
        frame = output_scaling_table(model, state.params, state.batch_x, alphas)
        keys = {"architecture": architecture, "dataset": dataset, "variant": variant}
        for i, (k, v) in enumerate({**keys, "seed": seed}.items()):
            frame.insert(i, k, v)
        frame["batch_size"] = len(state.batch_x)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)
