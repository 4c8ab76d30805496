"""The experiment grid as plain tables, and the learning-rate rules (torch-free).

Every cell of the grid is one Snakemake job keyed by its axes. Scales travel through file
names, so they have one canonical spelling: :func:`scale_token` (six significant digits),
and the value a job uses is the token parsed back (:func:`canonical_scale`). Computing
the grid and formatting it are pure functions of the config, so the DAG is the same on
every machine and in every cluster job.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from goldilocks.architectures import depth, output_exponent

LINEAR_OUTPUT_VARIANTS = ("layernorm", "combined")


def scale_token(value: float) -> str:
    """Canonical spelling of a scale in paths and wildcards (``1e-06``, ``0.0316228``)."""
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"scale must be positive and finite, got {value!r}")
    return f"{value:.6g}"


def canonical_scale(value: float | str) -> float:
    """The value a job uses for a scale: its canonical token parsed back."""
    return float(scale_token(float(value)))


def log_grid(spec: Mapping, depth_: int) -> list[float]:
    """Scales of one grid spec: ``num`` log-spaced points, plus ``extra`` values.

    Args:
        spec: ``{"log10_min", "log10_max", "num", "times_depth", "extra"}``. With
            ``times_depth`` the exponents are multiplied by ``L`` (the paper's
            ``T in [10^(-3L), 10^(3L)]``).
        depth_: ``L`` of the architecture variant.

    Returns:
        Sorted, de-duplicated canonical scales.
    """
    factor = depth_ if spec.get("times_depth", False) else 1
    lo, hi, num = spec["log10_min"] * factor, spec["log10_max"] * factor, spec["num"]
    exps = [lo] if num == 1 else [lo + (hi - lo) * i / (num - 1) for i in range(num)]
    values = [10.0**e for e in exps] + [float(v) for v in spec.get("extra", [])]
    return sorted({canonical_scale(v) for v in values})


def scale_spec(scales: Mapping, scaling: str, variant: str) -> Mapping:
    """The grid spec that ``scaling`` uses for ``variant``.

    ``alpha`` and ``joint`` sweep alpha; LayerNorm variants use ``alpha_linear`` (their
    output moves only linearly with alpha, so they need the wider range).
    """
    if scaling == "temperature":
        return scales["temperature"]
    if variant in LINEAR_OUTPUT_VARIANTS:
        return scales["alpha_linear"]
    return scales["alpha"]


def _power(base: float, exponent: int) -> float:
    """``base**exponent``, ``inf`` where it overflows a float (extreme scales are data)."""
    try:
        return base**exponent
    except OverflowError:
        return math.inf


def alpha_and_temperature(
    scaling: str, scale: float, architecture: str, variant: str
) -> tuple[float, float]:
    """``(alpha, T)`` of a cell (SPEC section 2).

    ``alpha``: weights times ``scale``, ``T = 1``; ``temperature``: ``alpha = 1``,
    ``T = scale``; ``joint``: ``alpha = scale`` and ``T = scale^k`` with the output
    exponent ``k``, cancelling the output scaling at large alpha. ``T = inf`` where
    ``scale^k`` overflows a float (e.g. ``alpha = 1e120``, ``k = 3``).
    """
    if scaling == "alpha":
        return scale, 1.0
    if scaling == "temperature":
        return 1.0, scale
    if scaling == "joint":
        return scale, _power(scale, output_exponent(architecture, variant))
    raise ValueError(f"scaling: unknown value {scaling!r}")


def lr_factor(
    scaling: str,
    scale: float,
    architecture: str,
    variant: str,
    alpha_rule: str = "paper",
) -> float:
    """Factor from ``lr_base`` to the learning rate used (SPEC section 5, paper App. G).

    | scaling / variant                   | factor            |
    |-------------------------------------|-------------------|
    | temperature, any variant            | ``T``             |
    | alpha: homogeneous, bias, residual  | ``alpha^(2-L)``   |
    | alpha: layernorm, combined          | ``alpha``         |

    With ``alpha_rule="residual_small_alpha"`` the ``residual`` variant uses
    ``alpha^(2-L+𝓛)`` instead (identity path dominating at small alpha, App. G).
    """
    if scaling == "temperature":
        return scale
    if scaling != "alpha":
        raise ValueError(
            f"scaling: {scaling!r} has no learning-rate rule; use alpha or temperature"
        )
    if variant in LINEAR_OUTPUT_VARIANTS:
        return scale
    d = depth(architecture, variant)
    exponent = 2 - d.depth
    if alpha_rule == "residual_small_alpha" and variant == "residual":
        exponent += d.residual_depth
    elif alpha_rule not in ("paper", "residual_small_alpha"):
        raise ValueError(f"training.alpha_lr_rule: unknown value {alpha_rule!r}")
    return _power(scale, exponent)


@dataclass(frozen=True)
class CurvatureCell:
    """Keys of one curvature job."""

    architecture: str
    dataset: str
    variant: str
    scaling: str
    scale: str
    seed: int


@dataclass(frozen=True)
class TrainCell:
    """Keys of one training job."""

    architecture: str
    dataset: str
    variant: str
    scaling: str
    scale: str
    lr_base: str
    seed: int


def _pairs(config: Mapping) -> list[tuple[str, str]]:
    return [(p["architecture"], p["dataset"]) for p in config["pairs"]]


def curvature_cells(config: Mapping) -> list[CurvatureCell]:
    """Every curvature cell of the config: pairs x variants x scalings x scales x seeds."""
    cur = config["curvature"]
    cells = []
    for arch, data in _pairs(config):
        for variant in config["variants"]:
            for scaling in cur["scalings"]:
                spec = scale_spec(cur["scales"], scaling, variant)
                for scale in log_grid(spec, depth(arch, variant).depth):
                    for seed in config["seeds"]:
                        cells.append(
                            CurvatureCell(arch, data, variant, scaling, scale_token(scale), seed)
                        )
    return cells


def train_cells(config: Mapping) -> list[TrainCell]:
    """Every training cell: pairs x variants x scalings x scales x lr_base x seeds.

    ``training.seeds`` (when set) replaces the global seeds for training only.
    """
    tr = config["training"]
    if not tr.get("enabled", True):
        return []
    cells = []
    for arch, data in _pairs(config):
        for variant in config["variants"]:
            for scaling in tr["scalings"]:
                spec = scale_spec(tr["scales"], scaling, variant)
                for scale in log_grid(spec, depth(arch, variant).depth):
                    for lr in tr["lr_base"]:
                        for seed in tr.get("seeds") or config["seeds"]:
                            cells.append(
                                TrainCell(
                                    arch,
                                    data,
                                    variant,
                                    scaling,
                                    scale_token(scale),
                                    scale_token(lr),
                                    seed,
                                )
                            )
    return cells


def unique(items: Iterable) -> list:
    """Items in first-seen order without repeats."""
    return list(dict.fromkeys(items))
