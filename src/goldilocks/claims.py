"""The paper's claims, each tested on the run's own tables (docs/claims.md).

Every claim of *Revisiting the Goldilocks Zone in Inhomogeneous Networks* (sections 3.1,
3.2, 4 and appendices C-I) that the tables can speak to is one function here. It takes
the aggregated tables (``results/curvature.parquet``, ``results/goldilocks_zone.parquet``,
optionally ``results/training.parquet`` and ``results/kl_layernorm.parquet``) and a dict
of thresholds, and returns one row per architecture/dataset pair and per variant/scaling
the claim is about, with the columns of :data:`COLUMNS`:

- ``claim``: the claim's id; ``paper_text``: the paper's words it tests (with section);
- ``architecture``, ``dataset``, ``variant``, ``scaling``: where it was tested (the
  training scaling for training claims);
- ``statistic``: what was computed, in words, with the numbers behind it;
- ``value``: the number the verdict compares; ``threshold``: what it is compared with;
- ``verdict``: ``supported``, ``not_supported`` or ``not_testable`` (the reason is then
  in ``statistic``: a variant, scaling or table the run does not have, too few finite
  cells, no zone).

Each claim function measures one variant/scaling and states only its statistic and
comparator; :func:`_claim` registers it with its variants, scalings and threshold, runs
it over every pair and cell, and turns a look-up that finds nothing (:func:`_need`) or
a failed precondition (:func:`_require`) into the ``not_testable`` row with its reason.

Missing tables, variants and scalings, NaN cells and a single seed never raise: a claim
is computed on what exists, or is ``not_testable``. A table that lacks a required
*column* is malformed input and raises ``ValueError`` naming the table and the column.

Conventions shared by the claims (docs/claims.md has the details):

- A *curve* is the seed mean of ``hessian_trace_ratio`` (Tr(H)/‖H‖_F) per grid scale,
  over the seeds that have a cell at every scale of the curve (:func:`complete_seeds`);
  NaN cells (saturated or overflowing) are skipped in the mean, and a scale whose every
  seed is NaN is NaN.
- *Large alpha* is ``alpha >= regime_alpha``, *small alpha* ``alpha <= 1/regime_alpha``.
- The *output exponent* k is the curvature table's ``output_exponent`` (the declared k
  of a registered model; for the built-ins 1 with LayerNorm, L otherwise); in a table
  without that column, 1 for the LayerNorm variants and ``depth`` (L) otherwise. Alpha
  scaling at alpha corresponds to temperature T = alpha^-k.
- A *final accuracy* is the last logged row of a training cell; a diverged cell counts
  with its epoch-0 accuracy (what training left it with: nothing gained;
  :func:`goldilocks.tables.final_accuracy` with ``diverged="initial"``). The *best
  accuracy* at a trained scale is the maximum over eta0 per training seed, then the mean
  over seeds.
- A trained scale is *in the zone* when its nearest curvature grid scale (in log scale,
  same variant and scaling) lies within the zone's bounds.

This module is torch-free: numpy, pandas, ``goldilocks.tables`` (final accuracy) and
``goldilocks.zone`` (zone look-ups) only.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pandas as pd

from goldilocks.tables import final_accuracy
from goldilocks.zone import LOG_TOL, bounds, inside, zone_row

COLUMNS = [
    "claim",
    "paper_text",
    "architecture",
    "dataset",
    "variant",
    "scaling",
    "statistic",
    "value",
    "threshold",
    "verdict",
]
SUPPORTED, NOT_SUPPORTED, NOT_TESTABLE = "supported", "not_supported", "not_testable"
VERDICTS = (SUPPORTED, NOT_SUPPORTED, NOT_TESTABLE)

PAPER_VARIANTS = ("homogeneous", "bias", "residual", "layernorm", "combined")
AFFINE_VARIANTS = ("layernorm_affine", "combined_affine")
VARIANTS = PAPER_VARIANTS + AFFINE_VARIANTS
#: Variants whose logits scale as alpha^1 (output exponent k = 1).
LAYERNORM_FAMILY = ("layernorm", "combined", "layernorm_affine", "combined_affine")
INHOMOGENEOUS = ("bias", "residual", *LAYERNORM_FAMILY)
WITHOUT_LAYERNORM = ("homogeneous", "bias", "residual")
RATIO = "hessian_trace_ratio"
PAIR = ["architecture", "dataset"]

#: Default thresholds, one config key each under ``claims:`` (docs/claims.md).
DEFAULT_THRESHOLDS: dict[str, float] = {
    # A curve is flat when max - min of its seed mean (Tr(H)/‖H‖_F, bounded by sqrt(d)
    # in magnitude) over the scales considered is at most this; a joint curve breaks at
    # small alpha when it strays from its large-alpha level by more than this.
    "flat_spread": 0.25,
    # Alpha and temperature curves coincide when max |r_alpha(alpha) - r_T(alpha^-k)| is
    # at most this (and differ when it is above).
    "coincide_max_diff": 0.25,
    # Large alpha: alpha >= this; small alpha: alpha <= 1 / this.
    "regime_alpha": 10.0,
    # A zone appears when its peak seed-mean Tr(H)/‖H‖_F exceeds this (and the peak is
    # interior to the measured range, with finite zone bounds).
    "zone_peak_min": 0.0,
    # LayerNorm peaks "much lower": peak / homogeneous peak below this.
    "peak_lower_ratio": 0.5,
    # Goes negative: the curve's minimum below this.
    "negative_max": 0.0,
    # Linear output scaling holds where ‖f_{alpha theta} - alpha f_theta‖/‖alpha f_theta‖
    # (seed mean) is at most this, and breaks where it is above.
    "linear_rel_tol": 0.01,
    # Zone aligned with training: mean best accuracy inside minus outside the zone above this.
    "align_margin": 0.0,
    # Best training in the zone: the zone's best accuracy at least the best outside minus this.
    "best_in_zone_tol": 0.0,
    # Curvature ranks accuracy: Spearman correlation at least this (below it: disconnect).
    "rank_corr_min": 0.5,
    # Residual falls faster: its slope per decade of T above the zone minus bias's is
    # below minus this.
    "falls_faster_margin": 0.0,
    # Trains well: best accuracy at least this fraction of the pair's best.
    "good_acc_rel": 0.9,
    # Wide range: at least this fraction of the trained temperatures train well.
    "wide_fraction": 0.5,
    # Training curves match when best accuracies differ by at most this (and a small-alpha
    # accuracy drop is a deficit above it).
    "train_match_tol": 0.1,
    # A cell is unstable when it diverged or its train loss rose above (1 + this) x its
    # epoch-0 loss at a logged epoch.
    "loss_rise_rel": 0.01,
    # Small alpha is less stable: unstable fraction under alpha minus under T above this.
    "instability_margin": 0.0,
    # Test follows train: Spearman over (scale, eta0) cells at least this.
    "test_train_rank_min": 0.8,
    # Fewest points for a rank correlation or a slope.
    "min_points": 3,
}


def resolve_thresholds(thresholds: dict | None) -> dict[str, float]:
    """:data:`DEFAULT_THRESHOLDS` updated with ``thresholds``.

    Raises:
        ValueError: an unknown key, or a value that is not a finite number.
    """
    merged = dict(DEFAULT_THRESHOLDS)
    for key, value in (thresholds or {}).items():
        if key not in DEFAULT_THRESHOLDS:
            known = ", ".join(DEFAULT_THRESHOLDS)
            raise ValueError(f"claims.{key}: unknown threshold; known: {known}")
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ValueError(f"claims.{key}: {value!r} is not a finite number")
        merged[key] = float(value)
    if merged["regime_alpha"] <= 1:
        raise ValueError(f"claims.regime_alpha: {merged['regime_alpha']!r} must be > 1")
    return merged


REQUIRED = {
    "curvature": ["architecture", "dataset", "variant", "scaling", "scale", "seed", RATIO],
    "zone": ["architecture", "dataset", "variant", "scaling", "lower", "upper", "peak_value"],
    "training": [
        "architecture",
        "dataset",
        "variant",
        "scaling",
        "scale",
        "seed",
        "lr_base",
        "epoch",
        "train_acc",
    ],
    "kl": ["architecture", "dataset", "variant", "seed", "alpha", "logit_rel_error"],
}


def _table(name: str, frame: pd.DataFrame | None) -> pd.DataFrame | None:
    """``frame`` checked for its required columns; None when absent or without rows."""
    if frame is None or len(frame.columns) == 0:
        return None
    missing = [c for c in REQUIRED[name] if c not in frame.columns]
    if missing:
        raise ValueError(f"claims: table '{name}' lacks column(s) {', '.join(missing)}")
    if name == "kl":
        return frame[np.isfinite(frame["alpha"].astype(float)) & (frame["alpha"] > 0)]
    if "scale" in frame:
        return frame[np.isfinite(frame["scale"].astype(float)) & (frame["scale"] > 0)]
    return frame


# ----------------------------------------------------------------------------- helpers


def _fmt(x: float) -> str:
    return "nan" if x is None or not np.isfinite(x) else f"{x:.3g}"


def _log(x) -> np.ndarray:
    return np.log10(np.asarray(x, float))


def seed_mean_curve(frame: pd.DataFrame, column: str = RATIO) -> pd.Series:
    """Seed mean of ``column`` per ``scale`` (ascending); NaN cells skipped, all-NaN NaN."""
    return frame.groupby("scale")[column].mean().sort_index().astype(float)


def complete_seeds(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of the seeds that have a row at every scale of ``frame`` (all rows if none has).

    A run with missing cells would otherwise average different seeds at different
    scales, and the seed-to-seed difference would look like a change along the curve.
    A NaN cell is a row: it does not drop its seed.
    """
    scales = frame["scale"].nunique()
    per_seed = frame.groupby("seed")["scale"].nunique()
    full = per_seed[per_seed == scales].index
    return frame[frame["seed"].isin(full)] if len(full) else frame


def at_least(scales, bound: float) -> np.ndarray:
    """``scales >= bound`` up to :data:`LOG_TOL` in log10."""
    return _log(scales) >= math.log10(bound) - LOG_TOL


def at_most(scales, bound: float) -> np.ndarray:
    """``scales <= bound`` up to :data:`LOG_TOL` in log10."""
    return _log(scales) <= math.log10(bound) + LOG_TOL


def value_at(curve: pd.Series, x: float) -> tuple[float, bool]:
    """``curve`` (index: ascending scales) at scale ``x``, linear in log10 scale.

    Returns:
        ``(value, exact)``: exact when ``x`` is a grid scale (to :data:`LOG_TOL`); NaN when
        ``x`` lies outside the grid or either neighbouring grid value is NaN.
    """
    if not np.isfinite(x) or x <= 0 or curve.empty:
        return math.nan, False
    logs, values, lx = _log(curve.index), curve.to_numpy(float), math.log10(x)
    j = int(np.argmin(np.abs(logs - lx)))
    if abs(logs[j] - lx) <= LOG_TOL:
        return float(values[j]), True
    if lx < logs[0] or lx > logs[-1]:
        return math.nan, False
    hi = int(np.searchsorted(logs, lx))
    lo = hi - 1
    w = (lx - logs[lo]) / (logs[hi] - logs[lo])
    return float(values[lo] * (1 - w) + values[hi] * w), False


def nearest_grid(grid: Iterable[float], x: float) -> float:
    """The grid scale nearest to ``x`` in log10; NaN beyond half a grid step off its ends."""
    values = np.sort(np.asarray(list(grid), float))
    logs = _log(values)
    if len(logs) == 0 or not np.isfinite(x) or x <= 0:
        return math.nan
    lx = math.log10(x)
    j = int(np.argmin(np.abs(logs - lx)))
    if len(logs) == 1:
        half = LOG_TOL
    else:
        step = logs[1] - logs[0] if lx < logs[0] else logs[-1] - logs[-2]
        half = step / 2 + LOG_TOL
    if lx < logs[0] - half or lx > logs[-1] + half:
        return math.nan
    return float(values[j])  # the grid value itself, usable as an index label


def spearman(x: Iterable[float], y: Iterable[float]) -> tuple[float, int]:
    """Spearman rank correlation over the pairs where both are finite.

    Returns:
        ``(rho, n)``; rho is 0 when either side is constant (no association can be
        shown) and NaN when ``n < 2``.
    """
    frame = pd.DataFrame({"x": np.asarray(list(x), float), "y": np.asarray(list(y), float)})
    frame = frame[np.isfinite(frame["x"]) & np.isfinite(frame["y"])]
    n = len(frame)
    if n < 2:
        return math.nan, n
    rx, ry = frame["x"].rank().to_numpy(), frame["y"].rank().to_numpy()
    if np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return 0.0, n
    return float(np.corrcoef(rx, ry)[0, 1]), n


def best_accuracy(final: pd.DataFrame, column: str = "train_acc") -> pd.DataFrame:
    """Best final ``column`` over eta0, per training seed and trained scale.

    Args:
        final: :func:`final_accuracy` rows of one variant and scaling.

    Returns:
        One row per scale (ascending): ``mean`` over seeds of the per-seed best, ``min``,
        ``max``, ``seeds`` (seeds with a finite best) and ``per_seed`` (dict seed -> best).
    """
    per_seed = final.groupby(["scale", "seed"])[column].max()
    rows = []
    for scale, group in per_seed.groupby(level="scale"):
        values = group.droplevel("scale")
        finite = values[np.isfinite(values.astype(float))]
        rows.append(
            {
                "scale": float(scale),
                "mean": float(finite.mean()) if len(finite) else math.nan,
                "min": float(finite.min()) if len(finite) else math.nan,
                "max": float(finite.max()) if len(finite) else math.nan,
                "seeds": len(finite),
                "per_seed": {int(s): float(v) for s, v in finite.items()},
            }
        )
    columns = ["scale", "mean", "min", "max", "seeds", "per_seed"]
    return pd.DataFrame(rows, columns=columns).sort_values("scale").reset_index(drop=True)


def _cell_subset(
    frame: pd.DataFrame | None, table: str, variant: str, scaling: str, absent: str
) -> tuple[pd.DataFrame | None, str]:
    """The rows of ``variant``/``scaling`` in the run's ``table`` table ``frame``, or None
    and the reason (``absent``: the variant has rows, but none under ``scaling``)."""
    if frame is None:
        return None, f"no {table} table"
    if variant not in set(frame["variant"]):
        return None, f"variant '{variant}' not in the {table} table"
    sub = frame[(frame["variant"] == variant) & (frame["scaling"] == scaling)]
    if sub.empty:
        return None, absent
    return sub, ""


@dataclass
class PairTables:
    """One architecture/dataset pair's tables (None: the run has no such table)."""

    architecture: str
    dataset: str
    curvature: pd.DataFrame | None
    zone: pd.DataFrame | None
    training: pd.DataFrame | None
    kl: pd.DataFrame | None

    @functools.cached_property
    def final(self) -> pd.DataFrame | None:
        return None if self.training is None else final_accuracy(self.training, diverged="initial")

    def curvature_rows(self, variant: str, scaling: str) -> tuple[pd.DataFrame | None, str]:
        """Curvature rows of ``variant``/``scaling``, or None and the reason."""
        absent = f"scaling '{scaling}' of '{variant}' not in the curvature table"
        sub, why = _cell_subset(self.curvature, "curvature", variant, scaling, absent)
        return (None, why) if sub is None else (complete_seeds(sub), "")

    def curve(self, variant: str, scaling: str) -> tuple[pd.Series | None, str]:
        sub, why = self.curvature_rows(variant, scaling)
        return (None, why) if sub is None else (seed_mean_curve(sub), "")

    def depth(self, variant: str) -> int | None:
        c = self.curvature
        if c is None or "depth" not in c:
            return None
        d = c.loc[c["variant"] == variant, "depth"].dropna()
        return int(d.iloc[0]) if len(d) else None

    def exponent(self, variant: str) -> int | None:
        """k: the curvature table's ``output_exponent`` column; in tables without it, 1
        for the LayerNorm variants and L otherwise."""
        c = self.curvature
        if c is not None and "output_exponent" in c:
            k = c.loc[c["variant"] == variant, "output_exponent"].dropna()
            return int(k.iloc[0]) if len(k) else None
        return 1 if variant in LAYERNORM_FAMILY else self.depth(variant)

    def zone_row(self, variant: str, scaling: str) -> tuple[pd.Series | None, str]:
        return zone_row(self.zone, variant, scaling)

    def final_rows(self, variant: str, scaling: str) -> tuple[pd.DataFrame | None, str]:
        """Final-accuracy rows of ``variant``/``scaling``, or None and the reason."""
        absent = f"no training cells of '{variant}' under '{scaling}'"
        return _cell_subset(self.final, "training", variant, scaling, absent)

    def best(self, variant: str, scaling: str, column: str = "train_acc"):
        sub, why = self.final_rows(variant, scaling)
        if sub is None:
            return None, why
        if column not in sub:
            return None, f"training table has no '{column}'"
        return best_accuracy(sub, column), ""

    def best_curve(self, variant: str, scaling: str) -> tuple[pd.Series | None, str]:
        """Best final train accuracy per trained scale (index ascending), or None and why."""
        best, why = self.best(variant, scaling)
        return (None, why) if best is None else (best.set_index("scale")["mean"], "")

    def in_zone(self, variant: str, scaling: str, scales: Iterable[float]):
        """Per trained scale: True/False (nearest curvature scale in the zone), or None."""
        z, why = self.zone_row(variant, scaling)
        if z is None:
            return None, why
        interval = bounds(z)
        if interval is None:
            return None, f"no zone for '{variant}' under '{scaling}' (peak not positive)"
        sub, _ = self.curvature_rows(variant, scaling)
        grid = sorted(set(sub["scale"])) if sub is not None else None
        near = [nearest_grid(grid, s) if grid else s for s in scales]
        return inside(*interval, near), ""

    def curvature_at(self, variant: str, scaling: str, scales: Iterable[float], seed=None):
        """Seed-mean (or ``seed``'s) Tr(H)/‖H‖_F at the curvature scale nearest each scale."""
        sub, why = self.curvature_rows(variant, scaling)
        if sub is None:
            return None, why
        if seed is not None and seed in set(sub["seed"]):
            sub = sub[sub["seed"] == seed]
        curve = seed_mean_curve(sub)
        values = []
        for s in scales:
            near = nearest_grid(curve.index, s)
            values.append(float(curve.loc[near]) if np.isfinite(near) else math.nan)
        return np.array(values, float), ""


def _pairs(tables: dict[str, pd.DataFrame | None]) -> list[PairTables]:
    keys: set[tuple[str, str]] = set()
    for frame in tables.values():
        if frame is not None:
            keys |= set(frame[PAIR].drop_duplicates().itertuples(index=False, name=None))
    pairs = []
    for arch, data in sorted(keys):
        parts = {}
        for name, frame in tables.items():
            sub = None
            if frame is not None:
                sub = frame[(frame["architecture"] == arch) & (frame["dataset"] == data)]
                sub = sub if len(sub) else None
            parts[name] = sub
        pairs.append(PairTables(arch, data, **parts))
    return pairs


def _row(variant, scaling, statistic, value, threshold, ok: bool | None) -> dict:
    """One result; ``ok`` None or a NaN value: not testable."""
    value = math.nan if value is None else float(value)
    if ok is None or not np.isfinite(value):
        verdict = NOT_TESTABLE
    else:
        verdict = SUPPORTED if ok else NOT_SUPPORTED
    return {
        "variant": variant,
        "scaling": scaling,
        "statistic": statistic,
        "value": value,
        "threshold": float(threshold),
        "verdict": verdict,
    }


def _untestable(variant, scaling, reason, threshold) -> dict:
    return _row(variant, scaling, f"not testable: {reason}", math.nan, threshold, None)


class _NotTestable(Exception):
    """Raised while a claim measures one variant/scaling: the run cannot test it (why)."""


_T = TypeVar("_T")


def _need(found: tuple[_T | None, str]) -> _T:
    """The thing of a ``(thing, why)`` look-up such as :meth:`PairTables.curve`.

    Raises:
        _NotTestable: ``why``, when the thing is None.
    """
    thing, why = found
    if thing is None:
        raise _NotTestable(why)
    return thing


def _require(condition: bool, why: str) -> None:
    """Raises :class:`_NotTestable` (``why``) unless ``condition``."""
    if not condition:
        raise _NotTestable(why)


#: A claim's measurement: its value, the statistic in words, whether the comparator holds.
Measured = tuple[float, str, bool]
#: ``measure(pair, variant, scaling, thresholds, threshold) -> Measured``.
Measure = Callable[[PairTables, str, str, dict, float], Measured]


def _cell_rows(
    pair: PairTables,
    th: dict,
    threshold: str,
    cells: tuple[tuple[str, ...], tuple[str, ...]],
    measure: Measure,
) -> list[dict]:
    """One row per variant x scaling of ``cells`` (variants, scalings): what ``measure``
    measured there, or ``not_testable`` with the reason of the :class:`_NotTestable` it
    raised; every row is compared with ``th[threshold]``."""
    t = th[threshold]
    variants, scalings = cells
    rows = []
    for variant in variants:
        for scaling in scalings:
            try:
                value, statistic, ok = measure(pair, variant, scaling, th, t)
            except _NotTestable as why:
                rows.append(_untestable(variant, scaling, str(why), t))
            else:
                rows.append(_row(variant, scaling, statistic, value, t, ok))
    return rows


#: The paper's words each claim tests (with their section), by claim id, in the order of
#: the paper: the ``paper_text`` column.
PAPER_TEXT = {
    "homogeneous_joint_flat": (
        '3.1: "In homogeneous networks, the curvature stays flat across all α in this plot, '
        'confirming that T=α^L cancels the effect of α-scaling"'
    ),
    "homogeneous_alpha_temperature_coincide": (
        '3.1: "The baseline homogeneous model serves as a reference point: it shows perfect '
        'symmetry between α- and T-scaling"'
    ),
    "inhomogeneous_alpha_temperature_differ": (
        '3.1: "In contrast, the inhomogeneous networks deviate from this pattern. While a '
        "Goldilocks zone still appears under both scaling strategies, the symmetry between them "
        'is broken."'
    ),
    "zone_appears": (
        '3.1: "across all architectures, a Goldilocks zone—marked by a peak of positive '
        "curvature—emerges under both scaling strategies. This includes networks with biases, "
        'residuals, and even LayerNorm"'
    ),
    "joint_flat_large_alpha": (
        '3.1: "In inhomogeneous networks, we also observe flat curvature in the large-α regime, '
        "indicating that in this regime, weight scaling can still be compensated by an "
        'appropriate temperature scaling" (biases, residuals, LayerNorm)'
    ),
    "joint_breaks_small_alpha": (
        '3.1: "However, for small α, this cancellation breaks down. The output behavior no '
        'longer follows simple scaling rules"'
    ),
    "residual_small_alpha_recoverable": (
        '3.1: "the effect of weight scaling can be approximately canceled by scaling the '
        "temperature as T=α^(L−𝓛), yielding partial symmetry in the curvature (Appendix D). "
        'This is the only architecture where small-α behavior remains recoverable"'
    ),
    "layernorm_peak_lower": '3.1: "the curvature in LayerNorm models is much lower"',
    "layernorm_goes_negative": (
        '3.1: "the curvature in LayerNorm models is much lower and can become negative outside '
        'the 0-scaling zone"'
    ),
    "layernorm_linear_output_holds": (
        'App. E: "confirming that the linear scaling relationship holds except when α becomes '
        'very small" (f_{αθ} = α f_θ)'
    ),
    "layernorm_linear_output_breaks_small_alpha": (
        'App. E: "when α becomes very small ... the ε term (typically added for numerical '
        'stability) begins to dominate"; the linear scaling holds "except when α becomes very '
        'small"'
    ),
    "zone_aligned_with_training": (
        '3.2: "In networks with biases and residual connections, we observe a strong alignment '
        "between the Goldilocks zone and trainability: both architectures achieve their best "
        'performance near the temperature-defined curvature peak." Abstract: "both strategies '
        'identify a Goldilocks zone aligned with better training"'
    ),
    "best_training_in_zone": (
        '3.2: "both architectures achieve their best performance near the temperature-defined '
        'curvature peak" (biases, residuals)'
    ),
    "curvature_ranks_training": (
        '3.2: "both architectures achieve their best performance near the temperature-defined '
        'curvature peak"; 4: "these zones generally align with improved trainability" (biases, '
        "residuals)"
    ),
    "layernorm_curvature_disconnect": (
        'Abstract: "layer normalization leads to lower or negative curvature, yet stable '
        'optimization—revealing a disconnect between curvature and trainability"; 4: "its '
        'predictive power for optimization becomes more illusive"'
    ),
    "residual_falls_faster": (
        '3.2: "For residual connections, however, we note a sharper decline in trainability as '
        'temperature increases beyond this zone."'
    ),
    "layernorm_trains_wide_range": (
        '3.2: "Despite weak or even negative excess positive curvature, these models maintain '
        'stable and high training performance across a wide temperature range."'
    ),
    "alpha_training_like_temperature": (
        'App. H: "For homogeneous networks, as well as those with biases and residual '
        "connections, we recover similar trends as previous work [11] and as our experiment "
        'with softmax temperature scaling."'
    ),
    "layernorm_alpha_unstable_small_alpha": (
        'App. H: "Under α-scaling, these models exhibit early training instability at small α, '
        'while they remain stable under large softmax temperatures." (LayerNorm, combined)'
    ),
    "layernorm_alpha_accuracy_drop_small_alpha": (
        'App. H: "Under α-scaling, these models exhibit early training instability at small α, '
        'while they remain stable under large softmax temperatures."; App. E: "leading to '
        'vanishing gradients and degraded trainability"'
    ),
    "test_follows_train": (
        'App. I: "The test accuracy results shown in Figure 5 mirror the trends observed in '
        'training accuracy (Figure 2)."'
    ),
}


ClaimFunction = Callable[..., pd.DataFrame]
#: Every claim, by id, in the order of the paper.
CLAIMS: dict[str, ClaimFunction] = {}


def _claim(claim_id: str, threshold: str, variants: tuple[str, ...], *scalings: str):
    """Register ``measure`` as claim ``claim_id`` (its words: :data:`PAPER_TEXT`) over
    every pair and every variant x scaling, compared with the threshold named ``threshold``.

    ``measure(pair, variant, scaling, thresholds, t)`` (``t``: that threshold's value)
    returns :data:`Measured`, or raises :class:`_NotTestable` (through :func:`_need` and
    :func:`_require`) when the run cannot test the claim there.
    """
    paper_text = PAPER_TEXT[claim_id]

    def decorate(measure: Measure) -> ClaimFunction:
        @functools.wraps(measure)
        def evaluate(
            curvature: pd.DataFrame | None = None,
            zone: pd.DataFrame | None = None,
            training: pd.DataFrame | None = None,
            kl: pd.DataFrame | None = None,
            thresholds: dict | None = None,
        ) -> pd.DataFrame:
            th = resolve_thresholds(thresholds)
            tables = {
                "curvature": _table("curvature", curvature),
                "zone": _table("zone", zone),
                "training": _table("training", training),
                "kl": _table("kl", kl),
            }
            rows = [
                {
                    "claim": claim_id,
                    "paper_text": paper_text,
                    "architecture": pair.architecture,
                    "dataset": pair.dataset,
                    **row,
                }
                for pair in _pairs(tables)
                for row in _cell_rows(pair, th, threshold, (variants, scalings), measure)
            ]
            return pd.DataFrame(rows, columns=COLUMNS)

        evaluate.claim_id = claim_id
        evaluate.paper_text = paper_text
        CLAIMS[claim_id] = evaluate
        return evaluate

    return decorate


# ----------------------------------------------------------------------- section 3.1


def _spread(curve: pd.Series, mask: np.ndarray) -> tuple[float, int, int]:
    """max - min of the finite values of ``curve[mask]``; (spread, finite, NaN) counts."""
    values = curve.to_numpy(float)[mask]
    finite = values[np.isfinite(values)]
    spread = float(finite.max() - finite.min()) if len(finite) >= 2 else math.nan
    return spread, len(finite), len(values) - len(finite)


def _flat_spread(curve: pd.Series, mask: np.ndarray, scales: str) -> tuple[float, int, int]:
    """:func:`_spread`, not testable below two finite scales (``scales``: which, in words)."""
    spread, n, nan = _spread(curve, mask)
    _require(n >= 2, f"{n} finite {scales}")
    return spread, n, nan


def _range(scales) -> str:
    scales = np.asarray(list(scales), float)
    if len(scales) == 0:
        return "none"
    return f"{scales.min():.3g}..{scales.max():.3g}"


@_claim("homogeneous_joint_flat", "flat_spread", ("homogeneous",), "joint")
def homogeneous_joint_flat(pair: PairTables, variant, scaling, th, t) -> Measured:
    """Homogeneous, joint: max - min of the seed-mean curve over all scales <= flat_spread."""
    curve = _need(pair.curve(variant, scaling))
    spread, n, nan = _flat_spread(curve, np.ones(len(curve), bool), "joint scale(s)")
    stat = (
        f"max-min of seed-mean Tr(H)/‖H‖_F over {n} joint scales "
        f"(alpha {_range(curve.index)}; {nan} NaN scale(s) left out); flat if <= threshold"
    )
    return spread, stat, spread <= t


def _alpha_vs_temperature(
    pair: PairTables,
    variant: str,
    curve_of: Callable[[str, str], tuple[pd.Series | None, str]],
    words: tuple[str, str],
) -> tuple[float, str]:
    """max |c_alpha(alpha) - c_T(T = alpha^-k)| over the alphas where both are finite.

    Args:
        curve_of: ``(variant, scaling) -> (curve or None, why)``, e.g.
            :meth:`PairTables.curve`; the T curve is read with :func:`value_at`.
        words: ``str.format`` templates of the reason when fewer than two alphas match
            and of the statistic; fields ``n`` (alphas), ``k``, ``exact`` (on a grid value
            of the T curve), ``inexact`` (interpolated) and ``mean`` (of the gaps).

    Returns:
        The largest gap and the statistic in words.
    """
    a = _need(curve_of(variant, "alpha"))
    temp = _need(curve_of(variant, "temperature"))
    k = pair.exponent(variant)
    _require(
        k is not None, f"k of '{variant}' unknown (no curvature rows with output_exponent or depth)"
    )
    diffs, exact = [], 0
    for alpha, value in a.items():
        if not np.isfinite(value):
            continue
        at_t, is_exact = value_at(temp, float(alpha) ** -k)
        if np.isfinite(at_t):
            diffs.append(abs(value - at_t))
            exact += is_exact
    too_few, statistic = words
    _require(len(diffs) >= 2, too_few.format(n=len(diffs), k=k))
    mean = _fmt(float(np.mean(diffs)))
    stat = statistic.format(n=len(diffs), k=k, exact=exact, inexact=len(diffs) - exact, mean=mean)
    return float(max(diffs)), stat


_CURVATURE_GAP_WORDS = (
    "{n} alpha(s) with a finite T-curve value at T = alpha^-{k}",
    "max over {n} alphas of |Tr/‖H‖_F(alpha) - Tr/‖H‖_F(T = alpha^-{k})| ({exact} on shared "
    "grid values, {inexact} interpolated linearly in log T; mean {mean})",
)


def _alpha_temperature_gap(pair: PairTables, variant: str) -> tuple[float, str]:
    """max |r_alpha(alpha) - r_T(alpha^-k)| over the alphas whose T is in the T grid."""
    gap, stat = _alpha_vs_temperature(pair, variant, pair.curve, _CURVATURE_GAP_WORDS)
    _require(np.isfinite(gap), stat)
    return gap, stat


@_claim("homogeneous_alpha_temperature_coincide", "coincide_max_diff", ("homogeneous",), "alpha")
def homogeneous_alpha_temperature_coincide(pair: PairTables, variant, scaling, th, t):
    """Homogeneous: alpha curve at alpha vs temperature curve at T = alpha^-L, max gap."""
    gap, stat = _alpha_temperature_gap(pair, variant)
    return gap, stat + "; coincide if <= threshold", gap <= t


@_claim("inhomogeneous_alpha_temperature_differ", "coincide_max_diff", INHOMOGENEOUS, "alpha")
def inhomogeneous_alpha_temperature_differ(pair: PairTables, variant, scaling, th, t):
    """Each inhomogeneous variant: the alpha/T gap (T = alpha^-k) exceeds coincide_max_diff."""
    gap, stat = _alpha_temperature_gap(pair, variant)
    return gap, stat + "; differ if > threshold", gap > t


def _peak_interior(curve: pd.Series | None, z: pd.Series, peak: float):
    """Whether the zone row's peak lies inside the curve's finite range (None: not
    checked), and where it lies, in words."""
    if curve is None or not np.isfinite(peak):
        return None, "interior not checked (no curvature rows)"
    finite = curve[np.isfinite(curve.to_numpy(float))]
    peak_scale = float(z.get("peak_scale", math.nan))
    if not np.isfinite(peak_scale) and len(finite):
        peak_scale = float(finite.idxmax())
    ends = (finite.index.min(), finite.index.max()) if len(finite) else ()
    interior = len(finite) >= 3 and not any(
        abs(math.log10(peak_scale) - math.log10(e)) <= LOG_TOL for e in ends
    )
    where = (
        f"peak at {_fmt(peak_scale)} "
        f"{'inside' if interior else 'at an end of'} the finite range "
        f"{_range(finite.index)}"
    )
    return interior, where


@_claim("zone_appears", "zone_peak_min", VARIANTS, "alpha", "temperature")
def zone_appears(pair: PairTables, variant, scaling, th, t) -> Measured:
    """Every variant, alpha and T: finite zone bounds, peak > zone_peak_min, peak interior."""
    z, why = pair.zone_row(variant, scaling)
    if z is None:
        raise _NotTestable(pair.curvature_rows(variant, scaling)[1] or why)
    peak = float(z["peak_value"])
    bounded = np.isfinite(float(z["lower"])) and np.isfinite(float(z["upper"]))
    interior, where = _peak_interior(pair.curve(variant, scaling)[0], z, peak)
    ok = bool(bounded and peak > t and interior is not False)
    stat = (
        f"peak seed-mean Tr(H)/‖H‖_F of the zone row; zone "
        f"[{_fmt(float(z['lower']))}, {_fmt(float(z['upper']))}]; {where}; "
        "appears if bounds finite, peak > threshold and peak interior"
    )
    return peak, stat, ok


def _regime(curve: pd.Series, th: dict) -> tuple[np.ndarray, np.ndarray]:
    scales = curve.index.to_numpy(float)
    r = th["regime_alpha"]
    return at_least(scales, r), at_most(scales, 1 / r)


@_claim("joint_flat_large_alpha", "flat_spread", INHOMOGENEOUS, "joint")
def joint_flat_large_alpha(pair: PairTables, variant, scaling, th, t) -> Measured:
    """Inhomogeneous variants, joint: spread of the curve over alpha >= regime_alpha."""
    curve = _need(pair.curve(variant, scaling))
    large, _ = _regime(curve, th)
    scales = f"scale(s) with alpha >= {th['regime_alpha']:g}"
    spread, n, nan = _flat_spread(curve, large, scales)
    stat = (
        f"max-min of seed-mean Tr(H)/‖H‖_F over {n} joint scales alpha >= "
        f"{th['regime_alpha']:g} ({_range(curve.index[large])}; {nan} NaN left out); "
        "flat if <= threshold"
    )
    return spread, stat, spread <= t


def _small_alpha_departure(curve: pd.Series, th: dict) -> tuple[float, str]:
    large, small = _regime(curve, th)
    values = curve.to_numpy(float)
    ref = values[large][np.isfinite(values[large])]
    low = values[small][np.isfinite(values[small])]
    if len(ref) == 0:
        return math.nan, f"no finite scale with alpha >= {th['regime_alpha']:g} (reference)"
    if len(low) == 0:
        return math.nan, f"no finite scale with alpha <= {1 / th['regime_alpha']:g}"
    level = float(np.median(ref))
    departure = float(np.max(np.abs(low - level)))
    stat = (
        f"max over {len(low)} joint scales alpha <= {1 / th['regime_alpha']:g} of |Tr/‖H‖_F - "
        f"its large-alpha level {_fmt(level)}| (median over {len(ref)} scales alpha >= "
        f"{th['regime_alpha']:g}); {int(np.sum(small)) - len(low)} NaN small-alpha scale(s) "
        "left out; breaks if > threshold"
    )
    return departure, stat


@_claim("joint_breaks_small_alpha", "flat_spread", INHOMOGENEOUS, "joint")
def joint_breaks_small_alpha(pair: PairTables, variant, scaling, th, t) -> Measured:
    """Inhomogeneous variants, joint: the small-alpha curve departs from the large-alpha level."""
    value, stat = _small_alpha_departure(_need(pair.curve(variant, scaling)), th)
    _require(np.isfinite(value), stat)
    return value, stat, value > t


@_claim("residual_small_alpha_recoverable", "flat_spread", ("residual",), "joint_residual")
def residual_small_alpha_recoverable(pair: PairTables, variant, scaling, th, t) -> Measured:
    """Residual, joint_residual (T = alpha^(L-𝓛)): flat over alpha <= 1/regime_alpha."""
    curve = _need(pair.curve(variant, scaling))
    scales = f"scale(s) with alpha <= {1 / th['regime_alpha']:g}"
    spread, n, nan = _flat_spread(curve, _regime(curve, th)[1], scales)
    contrast = ""
    joint, _ = pair.curve(variant, "joint")
    if joint is not None:
        j_spread, _, _ = _spread(joint, _regime(joint, th)[1])
        contrast = f"; under joint (T = alpha^L) the same spread is {_fmt(j_spread)}"
    stat = (
        f"max-min of seed-mean Tr(H)/‖H‖_F over {n} joint_residual scales alpha <= "
        f"{1 / th['regime_alpha']:g} ({nan} NaN left out){contrast}; recoverable if <= "
        "threshold"
    )
    return spread, stat, spread <= t


@_claim("layernorm_peak_lower", "peak_lower_ratio", LAYERNORM_FAMILY, "alpha", "temperature")
def layernorm_peak_lower(pair: PairTables, variant, scaling, th, t) -> Measured:
    """LayerNorm variants, alpha and T: zone peak / homogeneous zone peak < peak_lower_ratio."""
    z, why = pair.zone_row(variant, scaling)
    ref, rwhy = pair.zone_row("homogeneous", scaling)
    if z is None or ref is None:
        raise _NotTestable(pair.curvature_rows(variant, scaling)[1] or why or rwhy)
    peak, base = float(z["peak_value"]), float(ref["peak_value"])
    positive = np.isfinite(base) and base > 0
    _require(positive, f"homogeneous peak {_fmt(base)} under {scaling} is not positive")
    ratio = peak / base
    stat = (
        f"peak seed-mean Tr(H)/‖H‖_F {_fmt(peak)} divided by the homogeneous peak "
        f"{_fmt(base)}; much lower if < threshold"
    )
    return ratio, stat, ratio < t


@_claim(
    "layernorm_goes_negative", "negative_max", LAYERNORM_FAMILY, "alpha", "joint", "temperature"
)
def layernorm_goes_negative(pair: PairTables, variant, scaling, th, t) -> Measured:
    """LayerNorm variants, each curvature scaling: min of the seed-mean curve < negative_max."""
    curve = _need(pair.curve(variant, scaling))
    finite = curve[np.isfinite(curve.to_numpy(float))]
    _require(not finite.empty, "no finite scale")
    low = float(finite.min())
    stat = (
        f"min of seed-mean Tr(H)/‖H‖_F over {len(finite)} finite scales "
        f"(at {_fmt(float(finite.idxmin()))}); negative if < threshold"
    )
    return low, stat, low < t


# ------------------------------------------------------------------------ appendix E


def _kl_curve(pair: PairTables, variant: str) -> tuple[pd.Series | None, str]:
    if pair.kl is None:
        return None, "no kl_layernorm table"
    sub = pair.kl[pair.kl["variant"] == variant]
    if sub.empty:
        return None, f"variant '{variant}' not in the kl_layernorm table"
    return sub.groupby("alpha")["logit_rel_error"].mean().sort_index().astype(float), ""


def _kl_part(pair: PairTables, variant: str, bound: float, small: bool) -> pd.Series:
    """Seed-mean relative logit deviation at the finite alphas <= ``bound`` (``small``)
    or >= ``bound``; not testable when there is none."""
    curve = _need(_kl_curve(pair, variant))
    side, sign = (at_most, "<=") if small else (at_least, ">=")
    part = curve[side(curve.index, bound)]
    part = part[np.isfinite(part.to_numpy(float))]
    _require(not part.empty, f"no finite alpha {sign} {bound:g}")
    return part


@_claim("layernorm_linear_output_holds", "linear_rel_tol", LAYERNORM_FAMILY, "alpha")
def layernorm_linear_output_holds(pair: PairTables, variant, scaling, th, t) -> Measured:
    """LayerNorm variants: relative logit deviation <= linear_rel_tol at alpha >= 1/regime."""
    bound = 1 / th["regime_alpha"]
    part = _kl_part(pair, variant, bound, small=False)
    worst = float(part.max())
    stat = (
        f"max over {len(part)} alphas >= {bound:g} ({_range(part.index)}) of the seed-mean "
        "‖f_{αθ} - α f_θ‖_F / ‖α f_θ‖_F; holds if <= threshold"
    )
    return worst, stat, worst <= t


@_claim("layernorm_linear_output_breaks_small_alpha", "linear_rel_tol", LAYERNORM_FAMILY, "alpha")
def layernorm_linear_output_breaks_small_alpha(pair: PairTables, variant, scaling, th, t):
    """LayerNorm variants: relative logit deviation > linear_rel_tol somewhere at small alpha."""
    bound = 1 / th["regime_alpha"]
    part = _kl_part(pair, variant, bound, small=True)
    worst = float(part.max())
    above = part[part > t]
    where = f"largest alpha above it: {_fmt(float(above.index.max()))}" if len(above) else ""
    stat = (
        f"max over {len(part)} alphas <= {bound:g} ({_range(part.index)}) of the seed-mean "
        f"relative logit deviation; breaks if > threshold{'; ' + where if where else ''}"
    )
    return worst, stat, worst > t


# ----------------------------------------------------------------------- section 3.2

TRAIN_SCALINGS = ("temperature", "alpha")
ALIGNED_VARIANTS = ("bias", "residual")


@_claim("zone_aligned_with_training", "align_margin", ALIGNED_VARIANTS, *TRAIN_SCALINGS)
def zone_aligned_with_training(pair: PairTables, variant, scaling, th, t) -> Measured:
    """Bias, residual; T and alpha: mean best accuracy inside minus outside the zone."""
    inside, outside, seeds = _need(_zone_split(pair, variant, scaling))
    diff = float(inside["mean"].mean() - outside["mean"].mean())
    stat = (
        f"mean best-over-eta0 final train accuracy inside ({len(inside)} scales: "
        f"{_fmt(inside['mean'].mean())}) minus outside the zone ({len(outside)} scales: "
        f"{_fmt(outside['mean'].mean())}); {seeds} training seed(s); aligned if > threshold"
    )
    return diff, stat, diff > t


def _zone_split(pair: PairTables, variant: str, scaling: str):
    """Best accuracies of the trained scales inside and outside the zone, or the reason."""
    best, why = pair.best(variant, scaling)
    if best is None:
        return None, why
    best = best[np.isfinite(best["mean"])]
    inside, why = pair.in_zone(variant, scaling, best["scale"])
    if inside is None:
        return None, why
    n_in, n_out = int(inside.sum()), int((~inside).sum())
    if n_in == 0 or n_out == 0:
        return None, f"{n_in} trained scale(s) inside the zone and {n_out} outside"
    return (best[inside], best[~inside], int(best["seeds"].max())), ""


@_claim("best_training_in_zone", "best_in_zone_tol", ALIGNED_VARIANTS, *TRAIN_SCALINGS)
def best_training_in_zone(pair: PairTables, variant, scaling, th, t) -> Measured:
    """Bias, residual; T and alpha: best accuracy inside the zone minus best outside."""
    inside, outside, seeds = _need(_zone_split(pair, variant, scaling))
    top_in = inside.loc[inside["mean"].idxmax()]
    top_out = outside.loc[outside["mean"].idxmax()]
    diff = float(top_in["mean"] - top_out["mean"])
    stat = (
        f"highest best-over-eta0 final train accuracy over the {len(inside)} trained "
        f"scale(s) in the zone ({_fmt(top_in['mean'])} at {_fmt(top_in['scale'])}) minus "
        f"the highest over the {len(outside)} outside ({_fmt(top_out['mean'])} at "
        f"{_fmt(top_out['scale'])}); {seeds} training seed(s); best in the zone if "
        ">= -threshold"
    )
    return diff, stat, diff >= -t


def _per_seed_spread(pair: PairTables, variant: str, scaling: str, best, th: dict) -> str:
    """The range of the per-training-seed rank correlations, in words ("" when no seed
    has enough points)."""
    seeds = sorted({s for d in best["per_seed"] for s in d})
    if len(seeds) < 2:
        return "; 1 training seed (no spread)"
    per_seed = []
    for seed in seeds:
        acc = [d.get(seed, math.nan) for d in best["per_seed"]]
        c_seed, _ = pair.curvature_at(variant, scaling, best["scale"], seed=seed)
        r, m = spearman(c_seed, acc)
        if m >= th["min_points"]:
            per_seed.append(r)
    if not per_seed:
        return ""
    low, high = _fmt(min(per_seed)), _fmt(max(per_seed))
    return f"; per training seed {low}..{high} ({len(per_seed)} seeds)"


def _rank_correlation(pair: PairTables, variant, scaling, th, t, aligned: bool) -> Measured:
    """Spearman of initial curvature against best accuracy over trained scales: >= t
    (``aligned``) or < t (a disconnect)."""
    best = _need(pair.best(variant, scaling))
    curv = _need(pair.curvature_at(variant, scaling, best["scale"]))
    rho, n = spearman(curv, best["mean"])
    _require(n >= th["min_points"], f"{n} trained scale(s) with finite curvature and accuracy")
    spread = _per_seed_spread(pair, variant, scaling, best, th)
    verdict = "aligned if >= threshold" if aligned else "disconnect if < threshold"
    stat = (
        f"Spearman rank correlation over {n} trained scales between initial "
        "seed-mean Tr(H)/‖H‖_F (nearest curvature scale) and best-over-eta0 final "
        f"train accuracy{spread}; {verdict}"
    )
    return rho, stat, (rho >= t if aligned else rho < t)


@_claim("curvature_ranks_training", "rank_corr_min", ALIGNED_VARIANTS, *TRAIN_SCALINGS)
def curvature_ranks_training(pair: PairTables, variant, scaling, th, t) -> Measured:
    """Bias, residual; T and alpha: Spearman(initial curvature, best accuracy) >= threshold."""
    return _rank_correlation(pair, variant, scaling, th, t, aligned=True)


@_claim("layernorm_curvature_disconnect", "rank_corr_min", LAYERNORM_FAMILY, "temperature")
def layernorm_curvature_disconnect(pair: PairTables, variant, scaling, th, t) -> Measured:
    """LayerNorm variants, T: Spearman(initial curvature, best accuracy) < rank_corr_min."""
    return _rank_correlation(pair, variant, scaling, th, t, aligned=False)


def _slope_above_zone(pair: PairTables, variant: str, th: dict) -> tuple[float, str]:
    best, why = pair.best(variant, "temperature")
    if best is None:
        return math.nan, why
    z, why = pair.zone_row(variant, "temperature")
    if z is None:
        return math.nan, why
    upper = float(z["upper"])
    if not np.isfinite(upper):
        return math.nan, f"no temperature zone for '{variant}'"
    best = best[np.isfinite(best["mean"])]
    inside, _ = pair.in_zone(variant, "temperature", best["scale"])
    logs, log_upper = _log(best["scale"]), math.log10(upper)
    above = logs > log_upper + LOG_TOL
    if inside is not None and np.any(inside & ~above):
        above[np.flatnonzero(inside & ~above).max()] = True  # the zone's last trained T
    above = best[above]
    if len(above) < 2:
        return math.nan, f"{len(above)} trained T from the zone's upper bound {upper:.3g} on"
    slope = float(np.polyfit(_log(above["scale"]), above["mean"].to_numpy(float), 1)[0])
    return slope, f"{variant}: {_fmt(slope)} over {len(above)} T in {_range(above['scale'])}"


@_claim("residual_falls_faster", "falls_faster_margin", ("residual",), "temperature")
def residual_falls_faster(pair: PairTables, variant, scaling, th, t) -> Measured:
    """Slope of best accuracy per decade of T above the zone: residual minus bias < -margin."""
    res, res_stat = _slope_above_zone(pair, "residual", th)
    bias, bias_stat = _slope_above_zone(pair, "bias", th)
    _require(np.isfinite(res), res_stat)
    _require(np.isfinite(bias), f"bias: {bias_stat}")
    stat = (
        "least-squares slope of best-over-eta0 final train accuracy per decade of T, over "
        "the trained T above each variant's zone upper bound and the last trained T inside "
        f"the zone, residual minus bias "
        f"({res_stat}; {bias_stat}); faster if < -threshold"
    )
    return res - bias, stat, res - bias < -t


def _pair_best_reference(pair: PairTables, scaling: str) -> float:
    f = pair.final
    if f is None:
        return math.nan
    sub = f[f["scaling"] == scaling]
    if sub.empty:
        return math.nan
    per_variant = [best_accuracy(g)["mean"].max() for _, g in sub.groupby("variant")]
    values = [v for v in per_variant if np.isfinite(v)]
    return float(max(values)) if values else math.nan


def _good_fraction(best: pd.DataFrame, level: float) -> tuple[float, int]:
    finite = best[np.isfinite(best["mean"])]
    if finite.empty:
        return math.nan, 0
    return float(np.mean(finite["mean"] >= level)), len(finite)


def _good_fractions_without_layernorm(pair: PairTables, level: float) -> str:
    """The same fraction for homogeneous, bias and residual under T, in words."""
    others = []
    for variant in WITHOUT_LAYERNORM:
        b, _ = pair.best(variant, "temperature")
        if b is not None:
            others.append(f"{variant} {_fmt(_good_fraction(b, level)[0])}")
    return f"; for comparison: {', '.join(others)}" if others else ""


@_claim("layernorm_trains_wide_range", "wide_fraction", LAYERNORM_FAMILY, "temperature")
def layernorm_trains_wide_range(pair: PairTables, variant, scaling, th, t) -> Measured:
    """LayerNorm variants, T: fraction of trained T whose best accuracy is near the pair's best."""
    reference = _pair_best_reference(pair, "temperature")
    level = th["good_acc_rel"] * reference
    best = _need(pair.best(variant, "temperature"))
    _require(np.isfinite(reference), "no finite accuracy")
    fraction, n = _good_fraction(best, level)
    _require(n > 0, "no finite best accuracy")
    contrast = _good_fractions_without_layernorm(pair, level)
    stat = (
        f"fraction of {n} trained T ({_range(best['scale'])}) whose best-over-eta0 final "
        f"train accuracy is >= {th['good_acc_rel']:g} x the pair's best {_fmt(reference)} "
        f"(= {_fmt(level)}){contrast}; wide if >= threshold"
    )
    return fraction, stat, fraction >= t


# ------------------------------------------------------------------------ appendix H


_ACCURACY_GAP_WORDS = (
    "{n} trained alpha(s) with a trained T = alpha^-{k} in range",
    "max over {n} trained alphas of |best acc(alpha) - best acc(T = alpha^-{k})| ({exact} on "
    "shared grid values, rest interpolated in log T; mean {mean}); similar if <= threshold",
)


@_claim("alpha_training_like_temperature", "train_match_tol", WITHOUT_LAYERNORM, "alpha")
def alpha_training_like_temperature(pair: PairTables, variant, scaling, th, t) -> Measured:
    """Homogeneous, bias, residual: best accuracy at alpha vs at T = alpha^-L, max gap."""
    gap, stat = _alpha_vs_temperature(pair, variant, pair.best_curve, _ACCURACY_GAP_WORDS)
    return gap, stat, gap <= t


def _unstable(final: pd.DataFrame, th: dict) -> pd.Series:
    rise = final["max_loss"] > (1 + th["loss_rise_rel"]) * final["initial_loss"]
    return final["diverged"].astype(bool) | rise


def _small_alpha_and_matched_t(a: pd.DataFrame, temp: pd.DataFrame, bound: float):
    """The cells of ``a`` at alpha <= ``bound`` that have a trained T = 1/alpha (nearest
    grid value), and the cells of ``temp`` at those T."""
    small = a[at_most(a["scale"], bound)]
    grid = sorted(set(temp["scale"]))
    matched = {s: nearest_grid(grid, 1 / s) for s in sorted(set(small["scale"]))}
    matched = {s: m for s, m in matched.items() if np.isfinite(m)}
    small = small[small["scale"].isin(list(matched))]
    return small, temp[temp["scale"].isin(set(matched.values()))]


@_claim("layernorm_alpha_unstable_small_alpha", "instability_margin", LAYERNORM_FAMILY, "alpha")
def layernorm_alpha_unstable_small_alpha(pair: PairTables, variant, scaling, th, t) -> Measured:
    """LayerNorm variants: unstable cells at small alpha minus at the matched large T."""
    bound = 1 / th["regime_alpha"]
    a = _need(pair.final_rows(variant, "alpha"))
    temp = _need(pair.final_rows(variant, "temperature"))
    _require("max_loss" in a, "training table has no train_loss")
    small, large_t = _small_alpha_and_matched_t(a, temp, bound)
    reason = f"no trained alpha <= {bound:g} with a trained T = 1/alpha in range"
    _require(not (small.empty or large_t.empty), reason)
    frac_a = float(_unstable(small, th).mean())
    frac_t = float(_unstable(large_t, th).mean())
    stat = (
        f"fraction of alpha cells with alpha <= {bound:g} ({len(small)} cells, alphas "
        f"{_range(small['scale'])}) that diverged or whose train loss rose above "
        f"(1 + {th['loss_rise_rel']:g}) x its epoch-0 loss ({_fmt(frac_a)}) minus the same "
        f"fraction of temperature cells at the nearest T = 1/alpha ({len(large_t)} cells: "
        f"{_fmt(frac_t)}); less stable if > threshold"
    )
    return frac_a - frac_t, stat, frac_a - frac_t > t


@_claim("layernorm_alpha_accuracy_drop_small_alpha", "train_match_tol", LAYERNORM_FAMILY, "alpha")
def layernorm_alpha_accuracy_drop_small_alpha(pair: PairTables, variant, scaling, th, t):
    """LayerNorm variants: best accuracy at T = 1/alpha minus at small alpha, largest gap."""
    bound = 1 / th["regime_alpha"]
    a = _need(pair.best(variant, "alpha"))
    curve = _need(pair.best_curve(variant, "temperature"))
    small = a[at_most(a["scale"], bound) & np.isfinite(a["mean"])]
    gaps = []
    for alpha, value in zip(small["scale"], small["mean"], strict=True):
        at_t, _ = value_at(curve, 1 / alpha)
        if np.isfinite(at_t):
            gaps.append((at_t - value, alpha))
    _require(bool(gaps), f"no trained alpha <= {bound:g} with a trained T = 1/alpha in range")
    gap, where = max(gaps)
    stat = (
        f"largest deficit over {len(gaps)} trained alphas <= {bound:g} of best-over-eta0 "
        f"final train accuracy under alpha against temperature at T = 1/alpha "
        f"(interpolated in log T; largest at alpha = {_fmt(where)}); drop if > threshold"
    )
    return gap, stat, gap > t


# ------------------------------------------------------------------------ appendix I


# Not named after its claim id: a function called test_* is collected by pytest wherever
# a test module imports it.
@_claim("test_follows_train", "test_train_rank_min", VARIANTS, *TRAIN_SCALINGS)
def heldout_follows_train(pair: PairTables, variant, scaling, th, t) -> Measured:
    """Every trained variant and scaling: Spearman of seed-mean final test vs train accuracy."""
    final = _need(pair.final_rows(variant, scaling))
    _require("test_acc" in final, "training table has no test_acc")
    cells = final.groupby(["scale", "lr_base"])[["train_acc", "test_acc"]].mean()
    rho, n = spearman(cells["train_acc"], cells["test_acc"])
    reason = f"{n} (scale, eta0) cell(s) with finite train and test accuracy"
    _require(n >= th["min_points"], reason)
    stat = (
        f"Spearman rank correlation over {n} (scale, eta0) cells of seed-mean final "
        "train and test accuracy; follows if >= threshold"
    )
    return rho, stat, rho >= t


# ---------------------------------------------------------------------------- all


def evaluate_claims(
    curvature: pd.DataFrame | None,
    zone: pd.DataFrame | None,
    training: pd.DataFrame | None = None,
    thresholds: dict | None = None,
    kl: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Every claim of :data:`CLAIMS` on every architecture/dataset pair of the tables.

    Args:
        curvature: ``results/curvature.parquet``.
        zone: ``results/goldilocks_zone.parquet``.
        training: ``results/training.parquet`` (None: training claims not testable).
        thresholds: overrides of :data:`DEFAULT_THRESHOLDS` (the config's ``claims:``).
        kl: ``results/kl_layernorm.parquet`` (None: the appendix E claims not testable).

    Returns:
        The rows of every claim, columns :data:`COLUMNS`, in the order of the paper.

    Raises:
        ValueError: an unknown or non-numeric threshold, or a table without a required
            column (one line naming them).
    """
    th = resolve_thresholds(thresholds)
    frames = [
        fn(curvature=curvature, zone=zone, training=training, kl=kl, thresholds=th)
        for fn in CLAIMS.values()
    ]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    return pd.concat(frames, ignore_index=True)


VERDICT_COLOURS = {SUPPORTED: "#d8f0d8", NOT_SUPPORTED: "#f6d5d5", NOT_TESTABLE: "#eeeeee"}


def claims_html(claims: pd.DataFrame) -> str:
    """The claims table as a self-contained HTML page (for ``snakemake --report``): a
    count per verdict, then one row per claim and place, coloured by its verdict."""
    counts = claims["verdict"].value_counts().reindex(list(VERDICTS), fill_value=0)
    summary = ", ".join(f"{n} {verdict.replace('_', ' ')}" for verdict, n in counts.items())
    shown = claims.drop(columns=["paper_text"]).assign(
        value=claims["value"].map(lambda v: f"{v:.4g}" if pd.notna(v) else ""),
        threshold=claims["threshold"].map(lambda v: f"{v:.4g}" if pd.notna(v) else ""),
    )
    rows = shown.style.hide(axis="index").apply(
        lambda row: [f"background-color: {VERDICT_COLOURS[row['verdict']]}"] * len(row), axis=1
    )
    texts = claims.drop_duplicates("claim")[["claim", "paper_text"]]
    quotes = "".join(f"<li><b>{c}</b>: {t}</li>" for c, t in texts.itertuples(index=False))
    return (
        "<html><head><meta charset='utf-8'><style>body{font-family:sans-serif;font-size:12px}"
        "td,th{padding:2px 6px;text-align:left;vertical-align:top}</style></head><body>"
        f"<h3>The paper's claims on this run: {summary}</h3>{rows.to_html()}"
        f"<h4>What each claim tests (the paper's words)</h4><ul>{quotes}</ul></body></html>"
    )
