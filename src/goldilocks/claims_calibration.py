"""Synthetic seeds for every claim: the calibration of its statistic and decision rule
(docs/claims.md, "Calibration").

A generator draws one seed's inputs to the claim's statistic (the curves or accuracies
the claim reads, on a grid like the quick default's) whose noiseless statistic is a given
*true* value, adds seed noise, and returns what the claim's kernel
(:mod:`goldilocks.claim_kernels`) computes on them. Seed noise is a per-seed offset
constant across scales (:data:`OFFSET_SD`, as the real LayerNorm joint curves differ
from seed to seed) plus independent noise per scale (:data:`NOISE_SD`); accuracies get
:data:`ACC_OFFSET_SD` and :data:`ACC_NOISE_SD`; the exact identities only float32
rounding (:data:`ROUNDING_SD`).

:func:`calibrate` runs a claim's generator with the true value at its threshold (the
null) and 2.5 per-seed standard deviations on the claimed side (the effect), and
reports the share of replicates whose row comes out ``supported``. numpy only.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from goldilocks import claim_kernels as kernel
from goldilocks.decision import SUPPORTED, decide

#: Per-seed offset of a Tr(H)/‖H‖_F curve, constant across its scales.
OFFSET_SD = 1.0
#: Independent noise of a Tr(H)/‖H‖_F value per scale and seed: small, since one seed's
#: cells share the initialisation, batch and projection and vary smoothly with scale.
NOISE_SD = 0.05
#: Per-seed offset and per-cell noise of a best accuracy.
ACC_OFFSET_SD, ACC_NOISE_SD = 0.03, 0.02
#: Per-seed and per-alpha noise of a relative logit deviation, in natural log units.
LOG_OFFSET_SD, LOG_NOISE_SD = 0.3, 0.1
#: Noise of an exact identity's two sides (float32 rounding of Tr(H)/‖H‖_F).
ROUNDING_SD = 1e-6
#: The effect: the true value this many per-seed standard deviations on the claimed side.
EFFECT_SDS = 2.5

#: ``generator(true, rng, thresholds) -> one seed's statistic``.
Generator = Callable[[float, np.random.Generator, dict], float]


def _x(n: int) -> np.ndarray:
    return np.linspace(-1.0, 1.0, n)


def _curve(shape: np.ndarray, rng: np.random.Generator, noise: float | None = None) -> np.ndarray:
    """``shape`` plus a per-seed offset and independent noise per scale (``noise``;
    :data:`NOISE_SD` when None)."""
    noise = NOISE_SD if noise is None else noise
    return shape + rng.normal(0, OFFSET_SD) + rng.normal(0, noise, len(shape))


def spread_4(true, rng, th) -> float:
    """Four scales (one regime of the joint curve), a ramp of height ``true``."""
    return kernel.spread(_curve(np.linspace(0, true, 4), rng))[0]


def recoverable_4(true, rng, th) -> float:
    """:func:`spread_4` with the input-dependent share of an input-dependent curve: the
    retained share log-normal around 1 (sd :data:`LOG_NOISE_SD` per alpha) at the four
    scales, through the recoverability kernel (flat and input-dependent)."""
    curve = _curve(np.linspace(0, true, 4), rng)
    retained = np.exp(rng.normal(0, LOG_NOISE_SD, 4))
    return kernel.effective_spread(curve, retained, th["flat_spread"], th["input_share_min"])[0]


#: Per-seed noise of a zone centre, in decades (half a grid step of 1.8 decades is 0.9;
#: a uniform quantisation error over one step has sd 0.52).
ZONE_SD = 0.5


def zone_shift(true, rng, th) -> float:
    """A variant's zone one decade from the homogeneous zone under T and ``1 + true``
    under alpha; each centre with its own noise, the homogeneous alpha and T centres
    one value (an exact identity)."""
    reference = rng.normal(0, ZONE_SD)
    t_v = 1.0 + rng.normal(0, ZONE_SD)
    a_v = 1.0 + true + rng.normal(0, ZONE_SD)
    return kernel.shift_difference(a_v, reference, t_v, reference)[0]


def identity_spread(true, rng, th) -> float:
    """Eleven joint scales of an exact identity: a ramp of ``true``, rounding noise."""
    return kernel.spread(_curve(np.linspace(0, true, 11), rng, ROUNDING_SD))[0]


def identity_gap(true, rng, th) -> float:
    """Eleven matched alpha/T points of an exact identity; the gap grows to ``true``."""
    shape = 3 * np.exp(-(_x(11) ** 2) * 4)
    offset = rng.normal(0, OFFSET_SD)  # one seed: one initialisation on both sides
    a = shape + offset + rng.normal(0, ROUNDING_SD, 11)
    t = shape + offset + np.linspace(0, true, 11) + rng.normal(0, ROUNDING_SD, 11)
    return kernel.max_abs_gap(a, t)[0]


def signed_gap(true, rng, th) -> float:
    """Four small alphas; the alpha and T curves each with their own per-seed offset,
    the alpha curve ``true`` above the T curve on average."""
    t = _curve(np.zeros(4), rng)
    a = _curve(np.full(4, true), rng)
    return kernel.mean_gap(a, t)[0]


def departure(true, rng, th) -> float:
    """Joint curve: four large alphas at a level, four small ones departing by up to
    ``true`` (at the smallest)."""
    shape = np.concatenate([true * np.array([1.0, 0.6, 0.3, 0.1]), np.zeros(4)])
    curve = _curve(shape, rng)
    return kernel.departure(curve[:4], curve[4:])[0]


def peak(true, rng, th) -> float:
    """Eleven scales: a bump of height ``true`` over a level of 3 (the peak's sign is not
    what binds), its ends at the level."""
    bump = np.exp(-(_x(11) ** 2) * 12)
    bump[[0, 1, -2, -1]] = 0.0  # the ends exactly at the level
    return kernel.prominence(_curve(3 + true * bump, rng))[0]


def ratio(true, rng, th) -> float:
    """Peak of a LayerNorm curve over the homogeneous peak (3), each seed offset."""
    bump = np.exp(-(_x(11) ** 2) * 12)
    base = 3.0
    layernorm = true * base - (1 - bump)  # peak true x base, lower away from it
    return kernel.peak_ratio(_curve(layernorm, rng), _curve(base * bump, rng))[0]


def minimum(true, rng, th) -> float:
    """Eleven scales: a bump falling to ``true`` at its ends."""
    x = _x(11)
    return kernel.minimum(_curve(true + 2 * (np.exp(-(x**2) * 4) - np.exp(-4)), rng))[0]


def log_maximum(true, rng, th) -> float:
    """Relative logit deviations at six alphas rising to ``true``, log-normal seed noise."""
    shape = true * np.geomspace(0.01, 1, 6)
    noise = rng.normal(0, LOG_OFFSET_SD) + rng.normal(0, LOG_NOISE_SD, 6)
    return kernel.maximum(shape * np.exp(noise))[0]


_INSIDE = np.array([False, False, True, True, True, False, False])


def _accuracy(shape: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return shape + rng.normal(0, ACC_OFFSET_SD) + rng.normal(0, ACC_NOISE_SD, len(shape))


def zone_mean(true, rng, th) -> float:
    """Seven trained scales, three in the zone, ``true`` higher on average."""
    return kernel.inside_minus_outside(_accuracy(0.6 + true * _INSIDE, rng), _INSIDE)[0]


def zone_best(true, rng, th) -> float:
    """Seven trained scales; the best inside the zone ``true`` above the best outside."""
    shape = np.array([0.5, 0.6, 0.65, 0.7 + true, 0.65, 0.7, 0.55])
    return kernel.best_inside_minus_outside(_accuracy(shape, rng), _INSIDE)[0]


@functools.cache
def _expected_spearman(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Latent Gaussian correlations r and the mean Spearman correlation of ``n`` pairs
    drawn with each (4,000 fixed-seed draws): the map from a true per-seed statistic to
    the r that produces it."""
    rng = np.random.default_rng(12345)
    latent = np.linspace(-1, 1, 81)
    z = rng.normal(size=(2, 4000, n))
    means = []
    for r in latent:
        x, y = z[0], r * z[0] + math.sqrt(max(1 - r * r, 0)) * z[1]
        rx, ry = x.argsort(1).argsort(1), y.argsort(1).argsort(1)
        rx, ry = rx - rx.mean(1, keepdims=True), ry - ry.mean(1, keepdims=True)
        means.append(np.mean((rx * ry).sum(1) / np.sqrt((rx**2).sum(1) * (ry**2).sum(1))))
    return latent, np.array(means)


def _correlated(true: float, n: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """``n`` Gaussian pairs whose expected Spearman correlation is ``true`` (clipped to
    what a latent correlation in [-1, 1] gives)."""
    latent, means = _expected_spearman(n)
    r = float(np.interp(true, means, latent))
    z = rng.normal(size=(2, n))
    return z[0], r * z[0] + math.sqrt(max(1 - r * r, 0)) * z[1]


def rank_7(true, rng, th) -> float:
    """Seven trained scales: initial curvature against best accuracy."""
    return kernel.rank_correlation(*_correlated(true, 7, rng), int(th["min_points"]))[0]


def rank_21(true, rng, th) -> float:
    """Seven scales x three eta0: final train against test accuracy."""
    return kernel.rank_correlation(*_correlated(true, 21, rng), int(th["min_points"]))[0]


def slopes(true, rng, th) -> float:
    """Three T above each zone; residual's slope per decade ``true`` off bias's."""
    x = np.array([1.0, 2.0, 3.0])
    res = _accuracy(0.8 + (-0.05 + true) * x, rng)
    bias = _accuracy(0.8 - 0.05 * x, rng)
    return kernel.slope_difference(x, res, x, bias)[0]


def wide(true, rng, th) -> float:
    """Seven trained T: a parabola in log T, its top at T = 1, whose part above
    good_acc_rel x its top covers the fraction ``true`` of the range."""
    shape = _parabola(float(true), th["good_acc_rel"])
    return kernel.good_fraction(_x(7), _accuracy(shape, rng), th["good_acc_rel"], 0.0)[0]


@functools.lru_cache(maxsize=64)
def _parabola(true: float, rel: float) -> np.ndarray:
    """Seven accuracies: a plateau of 0.85 around T = 1 falling smoothly to 0.3 (a
    logistic edge in log T), its half-width chosen by bisection so that the noiseless
    good fraction is ``true`` (the statistic interpolates linearly between grid points)."""
    x = _x(7)

    def shape(width: float) -> np.ndarray:
        return 0.85 - 0.55 / (1 + np.exp(-(np.abs(x) - width) / 0.15))

    low, high = 0.0, 3.0
    for _ in range(60):
        mid = (low + high) / 2
        if kernel.good_fraction(x, shape(mid), rel, 0.0)[0] < true:
            low = mid
        else:
            high = mid
    return shape(high)


def median_gap(true, rng, th) -> float:
    """Seven matched trained alphas, best accuracies ``true`` apart (sign alternating)."""
    base = _accuracy(0.6 + 0.2 * np.cos(_x(7) * 3), rng)
    other = base + true * np.array([1, -1, 1, -1, 1, -1, 1]) + rng.normal(0, ACC_NOISE_SD, 7)
    return kernel.median_abs_gap(base, other)[0]


def deficit(true, rng, th) -> float:
    """Three small alphas; accuracy under T up to ``true`` above accuracy under alpha."""
    ref = _accuracy(np.full(3, 0.8), rng)
    a = ref - true * np.array([1.0, 0.5, 0.2]) + rng.normal(0, ACC_NOISE_SD, 3)
    return kernel.max_deficit(a, ref)[0]


def instability(true, rng, th) -> float:
    """Nine alpha cells and nine T cells, unstable with probabilities 1/2 +- true/2."""
    p = float(np.clip(0.5 + true / 2, 0, 1)), float(np.clip(0.5 - true / 2, 0, 1))
    return kernel.fraction_difference(rng.random(9) < p[0], rng.random(9) < p[1])[0]


def _fisher(r):
    return np.arctanh(np.clip(r, -0.999999, 0.999999))


#: The scale on which a statistic's per-seed sd is measured and the effect placed:
#: relative errors on log10 (they span decades), correlations on Fisher's z (where
#: their sampling sd does not depend on the true value). (forward, inverse).
SCALES = {
    "linear": (lambda v: np.asarray(v, float), lambda v: v),
    "log": (lambda v: np.log10(np.asarray(v, float)), lambda v: 10.0**v),
    "fisher": (_fisher, np.tanh),
}


@dataclass(frozen=True)
class Calibration:
    """One claim's calibration: supported shares on the null and on the effect."""

    claim: str
    threshold: float
    null_true: float
    effect_true: float
    seed_sd: float
    null_supported: float
    effect_supported: float


def calibrate(spec, thresholds: dict, replicates: int = 200, seeds: int = 6, rng_seed: int = 0):
    """The share of ``replicates`` rows of ``seeds`` synthetic seeds that the claim's rule
    decides ``supported``, with the true per-seed statistic at the threshold (null) and
    :data:`EFFECT_SDS` per-seed standard deviations (measured on the null) on the claimed
    side (effect). ``spec``: a :class:`goldilocks.claims.ClaimSpec`."""
    rng = np.random.default_rng(rng_seed)
    t = thresholds[spec.threshold]
    boundary = spec.boundary(t)

    def rows(true: float) -> tuple[float, np.ndarray]:
        values = np.array(
            [
                [spec.calibration(true, rng, thresholds) for _ in range(seeds)]
                for _ in range(replicates)
            ]
        )
        supported = [decide(spec.passes(row, t), spec.rule).verdict == SUPPORTED for row in values]
        return float(np.mean(supported)), values

    forward, back = SCALES[spec.scale]
    null_rate, null_values = rows(boundary)
    sd = float(np.nanstd(forward(null_values)))
    effect = float(back(forward(boundary) + spec.side * EFFECT_SDS * sd))
    effect_rate, _ = rows(effect)
    return Calibration(spec.id, t, boundary, effect, sd, null_rate, effect_rate)
