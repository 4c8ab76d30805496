"""One spec per claim: the table every part of the claims reads (docs/claims.md).

:data:`SPECS` holds, for each claim of the paper, its id, the paper's section and words
(:data:`PAPER_TEXT`), the variants and scalings it is tested on, the statistic (a
function of one seed's tables in :mod:`goldilocks.claims_curvature` or
:mod:`goldilocks.claims_training`), the comparator, the threshold key and its default
(:data:`DEFAULT_THRESHOLDS`, the config's ``claims:``), a description, the decision rule
(:mod:`goldilocks.decision`) and the calibration generator
(:mod:`goldilocks.claims_calibration`). The schema's ``claims:`` block and docs/claims.md's
table are checked against it (tests/test_claims_spec.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from goldilocks import claims_calibration as gen
from goldilocks import claims_curvature as cc
from goldilocks import claims_training as ct
from goldilocks.claim_stats import INHOMOGENEOUS, LAYERNORM_FAMILY, VARIANTS, WITHOUT_LAYERNORM
from goldilocks.decision import SIGN_TEST, TOLERANCE

TRAIN_SCALINGS = ("temperature", "alpha")
ALIGNED_VARIANTS = ("bias", "residual")

#: Default thresholds, one config key each under ``claims:`` (docs/claims.md).
DEFAULT_THRESHOLDS: dict[str, float] = {
    # Exact identities (docs/method.md 4.8): Tr(H)/‖H‖_F of the two sides agree to this
    # on every seed (float32 agrees with float64 to 7e-7: docs/performance.md).
    "identity_tol": 0.001,
    # A curve is flat when max - min of Tr(H)/‖H‖_F over the scales considered is at most
    # this; a joint curve breaks at small alpha when it strays from its large-alpha level
    # by more than this.
    "flat_spread": 0.5,
    # Alpha and temperature curves differ when the mean gap at small alpha exceeds this.
    "coincide_max_diff": 0.25,
    # Large alpha: alpha >= this; small alpha: alpha <= 1 / this.
    "regime_alpha": 10.0,
    # A zone appears when min(peak, peak - max(first, last)) of the curve exceeds this.
    "zone_peak_min": 0.25,
    # LayerNorm peaks "much lower": peak / homogeneous peak below this.
    "peak_lower_ratio": 0.5,
    # Goes negative: the curve's minimum below this.
    "negative_max": 0.0,
    # Linear output scaling holds where ‖f_{alpha theta} - alpha f_theta‖/‖alpha f_theta‖
    # is at most this, and breaks where it is above.
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
    # Trains well: best accuracy at least this fraction of the variant's own best.
    "good_acc_rel": 0.9,
    # Wide range: at least this fraction of the trained temperatures train well.
    "wide_fraction": 0.6,
    # Training curves match when the median gap of best accuracies is at most this (and a
    # small-alpha accuracy drop is a deficit above it).
    "train_match_tol": 0.1,
    # A cell is unstable when it diverged or its train loss rose above (1 + this) x its
    # epoch-0 loss at a logged epoch.
    "loss_rise_rel": 0.01,
    # Small alpha is less stable: unstable fraction under alpha minus under T above this.
    "instability_margin": 0.0,
    # Test follows train: Spearman over (scale, eta0) cells at least this.
    "test_train_rank_min": 0.8,
    # Input-dependent: the logits' share of variance across inputs, relative to alpha = 1,
    # at least this at every small alpha (recoverable = flat and input-dependent).
    "input_share_min": 0.5,
    # Temperature the more robust probe: an inhomogeneous variant's zone centre sits
    # further from the homogeneous zone under alpha (T = alpha^-k) than under T by more
    # than this many decades.
    "probe_shift_margin": 0.0,
    # Fewest points for a rank correlation.
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


#: The paper's words each claim tests (with their section), by claim id.
PAPER_TEXT = {
    "temperature_probe_more_robust": (
        'Abstract: "temperature scaling probes the Goldilocks zone more robustly than weight '
        'scaling in inhomogeneous networks"; 1 and App. H: "Softmax temperature scaling '
        'behaves more consistently across models"'
    ),
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
    "small_alpha_recoverable_only_residual": (
        '3.1: "This is the only architecture where small-α behavior remains recoverable"; '
        "App. D (every other variant under T = α^m, its own small-α exponent)"
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
    "zone_aligned_with_test": (
        'App. I: "The test accuracy results shown in Figure 5 mirror the trends observed in '
        'training accuracy (Figure 2)"; 3.2: "a strong alignment between the Goldilocks zone '
        'and trainability" (biases, residuals), on test accuracy'
    ),
    "best_test_in_zone": (
        'App. I: "The test accuracy results shown in Figure 5 mirror the trends observed in '
        'training accuracy"; 3.2: "both architectures achieve their best performance near the '
        'temperature-defined curvature peak", on test accuracy'
    ),
    "curvature_ranks_test": (
        'App. I: "The test accuracy results shown in Figure 5 mirror the trends observed in '
        'training accuracy"; 4: "these zones generally align with improved trainability", on '
        "test accuracy"
    ),
    "test_follows_train": (
        'App. I: "The test accuracy results shown in Figure 5 mirror the trends observed in '
        'training accuracy (Figure 2)."'
    ),
}


#: Comparators: (value, threshold) -> the claim holds on this seed. ``>=-`` and ``<-``
#: compare with minus the threshold (tolerances and margins are non-negative keys).
COMPARATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": lambda v, t: v <= t,
    "<": lambda v, t: v < t,
    ">": lambda v, t: v > t,
    ">=": lambda v, t: v >= t,
    ">=-": lambda v, t: v >= -t,
    "<-": lambda v, t: v < -t,
    # |value| above the threshold, every passing seed on the side of the seeds' median
    # (a two-sided "differ" whose seeds must agree on the direction).
    "abs>": lambda v, t: abs(v) > t,
}


@dataclass(frozen=True)
class ClaimSpec:
    """One claim: where it is tested, how it is measured, compared, decided, calibrated."""

    id: str
    variants: tuple[str, ...]
    scalings: tuple[str, ...]
    measure: Callable[..., tuple[float, str, bool]]
    comparator: str
    threshold: str
    description: str
    calibration: gen.Generator
    tables: tuple[str, ...] = ("curvature",)
    rule: str = SIGN_TEST
    #: Where the calibration measures the per-seed sd (claims_calibration.SCALES).
    scale: str = "linear"

    @property
    def words(self) -> str:
        return PAPER_TEXT[self.id]

    @property
    def section(self) -> str:
        return self.words.split(":", 1)[0]

    @property
    def default(self) -> float:
        return DEFAULT_THRESHOLDS[self.threshold]

    @property
    def side(self) -> int:
        """+1 when the claim holds above its boundary, -1 below."""
        return 1 if self.comparator in (">", ">=", ">=-", "abs>") else -1

    @property
    def threshold_sign(self) -> float:
        """-1 where the comparator reads minus the threshold (``>=-``, ``<-``), else +1."""
        return -1.0 if self.comparator in (">=-", "<-") else 1.0

    def boundary(self, t: float) -> float:
        """The value at which the comparator flips: t, or -t for ``>=-`` and ``<-``."""
        return self.threshold_sign * t

    def passes(self, values, t: float) -> list[bool]:
        """Per seed: does its value pass the comparator (see :data:`COMPARATORS`)?"""
        check = COMPARATORS[self.comparator]
        ok = [bool(np.isfinite(v) and check(v, t)) for v in values]
        if self.comparator == "abs>" and len(values):
            sign = np.sign(np.nanmedian(values))
            ok = [o and np.sign(v) == sign for o, v in zip(ok, values, strict=True)]
        return ok

    @property
    def curvature_only(self) -> bool:
        return self.tables == ("curvature",)


def _spec(claim_id, variants, scalings, measure, comparator, threshold, description, calib, **kw):
    return ClaimSpec(
        claim_id, variants, scalings, measure, comparator, threshold, description, calib, **kw
    )


LN, INH, ALL = LAYERNORM_FAMILY, INHOMOGENEOUS, VARIANTS
CURV_TRAIN, TRAIN = ("curvature", "training"), ("training",)
TS = TRAIN_SCALINGS
SMALL = ("curvature", "small_alpha")
#: The inhomogeneous variants other than residual ("the only architecture"; homogeneous
#: is recoverable by construction, m = k = L).
NOT_RESIDUAL = tuple(v for v in INH if v != "residual")
RECOVERABLE = (
    "max - min of the joint_residual (T = alpha^m) curve over alpha <= 1/regime_alpha, or "
    "flat_spread x input_share_min / s (at most 10 x flat_spread) where the least retained "
    "input-dependent share s "
    "there is below input_share_min"
)
#: Every claim, in the order of the paper (docs/claims.md has the same table).
SPECS: tuple[ClaimSpec, ...] = (
    _spec("temperature_probe_more_robust", INH, ("temperature",),
          cc.temperature_probe_more_robust, ">", "probe_shift_margin",
          "distance of the zone centre from the homogeneous zone's (decades of T) under alpha "
          "(T = alpha^-k) minus under T", gen.zone_shift),
    _spec("homogeneous_joint_flat", ("homogeneous",), ("joint",), cc.homogeneous_joint_flat,
          "<=", "identity_tol", "max - min of the curve over all joint scales",
          gen.identity_spread, rule=TOLERANCE),
    _spec("homogeneous_alpha_temperature_coincide", ("homogeneous",), ("alpha",),
          cc.homogeneous_alpha_temperature_coincide, "<=", "identity_tol",
          "max over alphas of abs(c_alpha(alpha) - c_T(T = alpha^-L))", gen.identity_gap,
          rule=TOLERANCE),
    _spec("inhomogeneous_alpha_temperature_differ", INH, ("alpha",),
          cc.inhomogeneous_alpha_temperature_differ, "abs>", "coincide_max_diff",
          "mean over small alphas of c_alpha(alpha) - c_T(T = alpha^-k), signed; the seeds "
          "agree on its sign", gen.signed_gap),
    _spec("zone_appears", ALL, ("alpha", "temperature"), cc.zone_appears, ">", "zone_peak_min",
          "min(peak, peak - max(first, last)) of the curve", gen.peak),
    _spec("joint_flat_large_alpha", INH, ("joint",), cc.joint_flat_large_alpha, "<=",
          "flat_spread", "max - min of the curve over alpha >= regime_alpha", gen.spread_4),
    _spec("joint_breaks_small_alpha", INH, ("joint",), cc.joint_breaks_small_alpha, ">",
          "flat_spread", "max over alpha <= 1/regime_alpha of abs(curve - median over alpha >= "
          "regime_alpha)", gen.departure),
    _spec("residual_small_alpha_recoverable", ("residual",), ("joint_residual",),
          cc.small_alpha_recoverable, "<=", "flat_spread", RECOVERABLE, gen.recoverable_4,
          tables=SMALL),
    _spec("small_alpha_recoverable_only_residual", NOT_RESIDUAL, ("joint_residual",),
          cc.small_alpha_recoverable, ">", "flat_spread", RECOVERABLE, gen.recoverable_4,
          tables=SMALL),
    _spec("layernorm_peak_lower", LN, ("alpha", "temperature"), cc.layernorm_peak_lower, "<",
          "peak_lower_ratio", "peak / homogeneous peak (same seed and scaling)", gen.ratio),
    _spec("layernorm_goes_negative", LN, ("alpha", "joint", "temperature"),
          cc.layernorm_goes_negative, "<", "negative_max", "min of the curve", gen.minimum),
    _spec("layernorm_linear_output_holds", LN, ("alpha",), cc.layernorm_linear_output_holds,
          "<=", "linear_rel_tol", "max over alpha >= 1/regime_alpha of logit_rel_error",
          gen.log_maximum, tables=("kl",), scale="log"),
    _spec("layernorm_linear_output_breaks_small_alpha", LN, ("alpha",),
          cc.layernorm_linear_output_breaks_small_alpha, ">", "linear_rel_tol",
          "max over alpha <= 1/regime_alpha of logit_rel_error", gen.log_maximum,
          tables=("kl",), scale="log"),
    _spec("zone_aligned_with_training", ALIGNED_VARIANTS, TS, ct.zone_aligned_with_training,
          ">", "align_margin", "mean best accuracy inside minus outside the seed's zone",
          gen.zone_mean, tables=CURV_TRAIN),
    _spec("best_training_in_zone", ALIGNED_VARIANTS, TS, ct.best_training_in_zone, ">=-",
          "best_in_zone_tol", "highest best accuracy inside minus outside the seed's zone",
          gen.zone_best, tables=CURV_TRAIN),
    _spec("curvature_ranks_training", ALIGNED_VARIANTS, TS, ct.curvature_ranks_training, ">=",
          "rank_corr_min", "Spearman of initial curvature against best accuracy",
          gen.rank_7, tables=CURV_TRAIN, scale="fisher"),
    _spec("layernorm_curvature_disconnect", LN, ("temperature",),
          ct.layernorm_curvature_disconnect, "<", "rank_corr_min",
          "Spearman of initial curvature against best accuracy", gen.rank_7,
          tables=CURV_TRAIN, scale="fisher"),
    _spec("residual_falls_faster", ("residual",), ("temperature",), ct.residual_falls_faster,
          "<-", "falls_faster_margin", "slope of best accuracy per decade of T above the zone, "
          "residual minus bias", gen.slopes, tables=CURV_TRAIN),
    _spec("layernorm_trains_wide_range", LN, ("temperature",), ct.layernorm_trains_wide_range,
          ">=", "wide_fraction", "fraction of trained T with best accuracy >= good_acc_rel x "
          "the variant's own best", gen.wide, tables=TRAIN),
    _spec("alpha_training_like_temperature", WITHOUT_LAYERNORM, ("alpha",),
          ct.alpha_training_like_temperature, "<=", "train_match_tol",
          "median over trained alphas of abs(best acc(alpha) - best acc(T = alpha^-L))",
          gen.median_gap, tables=CURV_TRAIN),
    _spec("layernorm_alpha_unstable_small_alpha", LN, ("alpha",),
          ct.layernorm_alpha_unstable_small_alpha, ">", "instability_margin",
          "unstable share of alpha cells at alpha <= 1/regime_alpha minus of T cells at "
          "T = 1/alpha", gen.instability, tables=TRAIN),
    _spec("layernorm_alpha_accuracy_drop_small_alpha", LN, ("alpha",),
          ct.layernorm_alpha_accuracy_drop_small_alpha, ">", "train_match_tol",
          "largest deficit of best accuracy at alpha <= 1/regime_alpha against T = 1/alpha",
          gen.deficit, tables=TRAIN),
    _spec("zone_aligned_with_test", ALIGNED_VARIANTS, TS, ct.zone_aligned_with_test, ">",
          "align_margin", "mean best test accuracy inside minus outside the seed's zone",
          gen.zone_mean, tables=CURV_TRAIN),
    _spec("best_test_in_zone", ALIGNED_VARIANTS, TS, ct.best_test_in_zone, ">=-",
          "best_in_zone_tol", "highest best test accuracy inside minus outside the seed's "
          "zone", gen.zone_best, tables=CURV_TRAIN),
    _spec("curvature_ranks_test", ALIGNED_VARIANTS, TS, ct.curvature_ranks_test, ">=",
          "rank_corr_min", "Spearman of initial curvature against best test accuracy",
          gen.rank_7, tables=CURV_TRAIN, scale="fisher"),
    _spec("test_follows_train", ALL, TS, ct.heldout_follows_train, ">=", "test_train_rank_min",
          "Spearman over (scale, eta0) cells of final train against test accuracy",
          gen.rank_21, tables=TRAIN, scale="fisher"),
)  # fmt: skip
SPEC = {s.id: s for s in SPECS}
