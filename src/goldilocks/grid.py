"""Scale grids, the scalings' (alpha, T) and the learning-rate rules (torch-free).

Scales travel through file names, so they have one canonical spelling: :func:`scale_token`
(six significant digits), and the value a job uses is the token parsed back
(:func:`canonical_scale`). Which grid a variant sweeps, its joint temperature and its
alpha learning rate follow from its description (:mod:`goldilocks.variants`): the output
exponent ``k``, never the variant's name (docs/method.md sections 2 and 5).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from goldilocks.variants import Description, describe

SCALINGS: tuple[str, ...] = ("alpha", "temperature", "joint", "joint_residual")
ALPHA_LR_RULES: tuple[str, ...] = ("paper", "residual_small_alpha")


def scale_token(value: float) -> str:
    """Canonical spelling of a scale in paths and wildcards (``1e-06``, ``0.0316228``)."""
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"scale must be positive and finite, got {value!r}")
    return f"{value:.6g}"


def canonical_scale(value: float | str) -> float:
    """The value a job uses for a scale: its canonical token parsed back."""
    return float(scale_token(float(value)))


def _exponents(lo: float, hi: float, num: int) -> list[float]:
    return [lo] if num == 1 else [lo + (hi - lo) * i / (num - 1) for i in range(num)]


def log_grid(spec: Mapping, depth_: int) -> list[float]:
    """Scales of one grid spec: ``num`` log-spaced points, a denser ``refine`` stretch,
    plus ``extra`` values.

    Args:
        spec: ``{"log10_min", "log10_max", "num", "times_depth", "refine", "extra"}``.
            With ``times_depth`` the exponents are multiplied by ``L`` (the paper's
            ``T in [10^(-3L), 10^(3L)]``). ``refine`` (``{"log10_min", "log10_max",
            "num"}``, times ``L`` only with its own ``times_depth``) adds ``num`` more
            log-spaced points over its own range: the denser points around alpha = 1
            and T = 1, where the Goldilocks zones lie whatever the depth, that place
            the zone edges and put several trained scales inside every zone
            (docs/method.md section 2.4).
        depth_: ``L`` of the architecture variant.

    Returns:
        Sorted, de-duplicated canonical scales.
    """
    factor = depth_ if spec.get("times_depth", False) else 1
    exps = _exponents(spec["log10_min"] * factor, spec["log10_max"] * factor, spec["num"])
    refine = spec.get("refine")
    if refine:
        times = depth_ if refine.get("times_depth", False) else 1
        exps += _exponents(refine["log10_min"] * times, refine["log10_max"] * times, refine["num"])
    values = [10.0**e for e in exps] + [float(v) for v in spec.get("extra", [])]
    return sorted({canonical_scale(v) for v in values})


def applies(scaling: str, description: Description) -> bool:
    """Whether ``scaling`` is defined for a variant: ``joint_residual`` where it has a
    small-alpha exponent ``m`` (every built-in; a registered model from its switches);
    the others for every variant."""
    return scaling != "joint_residual" or description.small_alpha_exponent is not None


def scale_spec(scales: Mapping, scaling: str, description: Description) -> Mapping:
    """The grid spec that ``scaling`` uses for a variant.

    ``alpha``, ``joint`` and ``joint_residual`` sweep alpha; a variant whose logits move
    only linearly with alpha (``k = 1``) uses ``alpha_linear``, the wider range.
    """
    if scaling == "temperature":
        return scales["temperature"]
    return scales["alpha_linear"] if description.linear_output else scales["alpha"]


def scales_of(scales: Mapping, scaling: str, description: Description) -> list[float]:
    """The canonical scales ``scaling`` sweeps for a variant."""
    return log_grid(scale_spec(scales, scaling, description), description.depth)


def _power(base: float, exponent: int) -> float:
    """``base**exponent``, ``inf`` where it overflows a float (extreme scales are data)."""
    try:
        return base**exponent
    except OverflowError:
        return math.inf


def alpha_and_temperature(
    scaling: str, scale: float, architecture: str, variant: str
) -> tuple[float, float]:
    """``(alpha, T)`` of a cell (docs/method.md section 2).

    ``alpha``: weights times ``scale``, ``T = 1``; ``temperature``: ``alpha = 1``,
    ``T = scale``; ``joint``: ``alpha = scale`` and ``T = scale^k`` with the output
    exponent ``k``, cancelling the output scaling at large alpha; ``joint_residual``:
    ``T = scale^m`` with the small-alpha exponent ``m``, cancelling it as alpha -> 0
    (for ``residual`` ``m = L-𝓛``, the paper's Appendix D; only where :func:`applies`).
    ``T = inf`` where the power overflows a float (e.g. ``alpha = 1e120``, ``k = 3``).
    """
    if scaling == "alpha":
        return scale, 1.0
    if scaling == "temperature":
        return 1.0, scale
    d = describe(architecture, variant)
    if scaling == "joint":
        return scale, _power(scale, d.output_exponent)
    if scaling == "joint_residual":
        if d.small_alpha_exponent is None:
            raise ValueError(
                f"scaling: joint_residual needs a small-alpha exponent m; {architecture}/"
                f"{variant} has none"
            )
        return scale, _power(scale, d.small_alpha_exponent)
    raise ValueError(f"scaling: unknown value {scaling!r}")


def lr_factor(
    scaling: str,
    scale: float,
    architecture: str,
    variant: str,
    alpha_rule: str = "paper",
) -> float:
    """Factor from ``lr_base`` to the learning rate used (docs/method.md section 5).

    | scaling / rule          | factor                                               |
    |-------------------------|------------------------------------------------------|
    | temperature             | ``T``                                                |
    | alpha, ``paper``        | ``alpha^(2-k)``: ``alpha^(2-L)``; ``alpha`` if k = 1 |

    With ``alpha_rule="residual_small_alpha"`` a variant with a skip-only path (see
    :attr:`Description.skip_path_exponent`) uses ``alpha^(2-(L-𝓛))`` instead (the
    identity path dominating at small alpha, paper Appendix G).
    """
    if scaling == "temperature":
        return scale
    if scaling != "alpha":
        raise ValueError(
            f"scaling: {scaling!r} has no learning-rate rule; use alpha or temperature"
        )
    if alpha_rule not in ALPHA_LR_RULES:
        raise ValueError(f"training.alpha_lr_rule: unknown value {alpha_rule!r}")
    d = describe(architecture, variant)
    exponent = d.output_exponent
    if alpha_rule == "residual_small_alpha" and d.skip_path_exponent is not None:
        exponent = d.skip_path_exponent
    return _power(scale, 2 - exponent)


def unique(items: Iterable) -> list:
    """Items in first-seen order without repeats."""
    return list(dict.fromkeys(items))
