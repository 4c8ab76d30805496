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

The small-alpha side table (:func:`small_alpha_table`, docs/method.md section 2.3) does
the same kind of forward passes for every variant: the logits' norm and their
input-dependent share at small alpha, and the measured small-alpha exponent ``m``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
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


#: Columns of one (variant, seed)'s small-alpha rows (:func:`small_alpha_rows`).
SMALL_ALPHA_COLUMNS = ["alpha", "logit_norm", "input_share", "input_share_rel"]
#: log10 of the smallest and largest alpha of the measured small-alpha exponent, and
#: its points: deep enough that LayerNorm's eps regime holds (eps = 1e-5, below about
#: alpha = 1e-4 for the paper's networks) and a bias dominates.
SMALL_EXPONENT_WINDOW, SMALL_EXPONENT_POINTS = (-9.0, -7.0), 5


def input_share(logits: Tensor) -> float:
    """The logits' share of their second moment that varies with the input: the variance
    across the batch, summed over classes, over the mean square (1: no common part, 0:
    the same logits for every input)."""
    total = logits.square().mean(0).sum()
    varying = (logits - logits.mean(0)).square().mean(0).sum()
    return float(varying / total) if total > 0 else math.nan


@torch.no_grad()
def small_alpha_rows(
    model: nn.Module, params: dict[str, Tensor], x: Tensor, alphas: Iterable[float]
) -> pd.DataFrame:
    """Per alpha: ``logit_norm`` (``||f_{alpha theta}(X)||_F / sqrt(N)``),
    ``input_share`` (:func:`input_share`) and ``input_share_rel`` (that share over the
    share at alpha = 1), in float64."""
    theta = {k: v.to(torch.float64) for k, v in params.items()}
    x, fixed = x.to(torch.float64), alpha_fixed(model)
    base = input_share(forward(model, theta, x))
    rows = []
    for a in alphas:
        logits = forward(model, scale_params(theta, float(a), fixed), x)
        share = input_share(logits)
        rows.append(
            {
                "alpha": float(a),
                "logit_norm": float(torch.linalg.norm(logits)) / math.sqrt(len(x)),
                "input_share": share,
                "input_share_rel": share / base if base > 0 else math.nan,
            }
        )
    return pd.DataFrame(rows, columns=SMALL_ALPHA_COLUMNS)


def log_slope(alphas, norms) -> float:
    """Least-squares slope of log norm against log alpha (NaN with a zero or non-finite
    norm)."""
    a, n = np.log(np.asarray(alphas, float)), np.asarray(norms, float)
    if not (np.isfinite(n).all() and (n > 0).all()):
        return math.nan
    return float(np.polyfit(a, np.log(n), 1)[0])


def small_alpha_table(
    architecture: str,
    dataset: str,
    states: Mapping[tuple[str, int], object],
    alphas_of: Mapping[str, list[float]],
) -> pd.DataFrame:
    """The small-alpha side table of one pair, one row per (variant, seed, alpha).

    Args:
        states: ``(variant, seed) -> InitialState``; each seed's curvature batch.
        alphas_of: per variant, the alphas of its ``joint_residual`` curvature grid.

    Returns:
        Columns ``architecture, dataset, variant, seed``, :data:`SMALL_ALPHA_COLUMNS`,
        ``window`` (the row is one of the exponent's points, not a grid alpha),
        ``declared_m`` (the description's ``m``) and ``measured_m`` (the slope of log
        logit_norm against log alpha over :data:`SMALL_EXPONENT_WINDOW`, per seed).
    """
    from goldilocks.initial import model_of
    from goldilocks.variants import describe

    lo, hi = SMALL_EXPONENT_WINDOW
    n = SMALL_EXPONENT_POINTS
    window = [10 ** (lo + (hi - lo) * i / (n - 1)) for i in range(n)]
    frames = []
    for (variant, seed), state in states.items():
        model = model_of(architecture, dataset, variant, state.buffers)
        grid_alphas = list(alphas_of[variant])
        frame = small_alpha_rows(model, state.params, state.batch_x, grid_alphas + window)
        frame["window"] = [False] * len(grid_alphas) + [True] * len(window)
        tail = frame[frame["window"]]
        frame["declared_m"] = describe(architecture, variant).small_alpha_exponent
        frame["measured_m"] = log_slope(tail["alpha"], tail["logit_norm"])
        keys = {"architecture": architecture, "dataset": dataset, "variant": variant}
        for i, (k, v) in enumerate({**keys, "seed": seed}.items()):
            frame.insert(i, k, v)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)
