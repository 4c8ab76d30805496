"""The paper's claims, each tested on the run's own tables over seeds (docs/claims.md).

Every claim of *Revisiting the Goldilocks Zone in Inhomogeneous Networks* (sections 3.1,
3.2, 4 and appendices C-I) that the tables can speak to is one :class:`ClaimSpec` of
:data:`SPECS`: its id, the paper's words, the variants and scalings it is about, the
statistic (a function of one seed's tables: :mod:`goldilocks.claims_curvature`,
:mod:`goldilocks.claims_training`), the comparator, the threshold key (config
``claims:``), the decision rule (:mod:`goldilocks.decision`) and the calibration
generator (:mod:`goldilocks.claims_calibration`).

:func:`evaluate_claims` computes each claim's statistic on every seed (curvature and
training seeds of one value stay paired), compares each seed with the threshold and
decides the row: ``supported``, ``not_supported``, ``inconclusive`` (with the reason:
too few seeds, split seeds, or a training row's deciding cells not converged) or
``not_testable`` (the run lacks the variant, scaling, table or enough finite cells; the
reason is in ``statistic``). Curvature claims are also
decided on the even and the odd sub-grid of scales (``resolution_robust``).

Missing tables, variants and scalings, NaN cells and a single seed never raise. A table
that lacks a required *column* is malformed input: ``ValueError`` naming the table and
the column. Torch-free: numpy, pandas and ``goldilocks.cells`` only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from goldilocks.claim_stats import (  # noqa: F401  (re-exported: figures and tests use them)
    INHOMOGENEOUS,
    LAYERNORM_FAMILY,
    LOG_TOL,
    RATIO,
    VARIANTS,
    WITHOUT_LAYERNORM,
    NotTestable,
    PairTables,
    best_accuracy,
    check_table,
    final_accuracy,
    nearest_grid,
    pairs_of,
    spearman,
    value_at,
)
from goldilocks.claims_spec import (  # noqa: F401  (re-exported)
    DEFAULT_THRESHOLDS,
    PAPER_TEXT,
    SPEC,
    SPECS,
    TRAIN_SCALINGS,
    ClaimSpec,
    resolve_thresholds,
)
from goldilocks.decision import (
    INCONCLUSIVE,
    NOT_SUPPORTED,
    NOT_TESTABLE,
    SUPPORTED,
    VERDICTS,
    decide,
    interval,
)

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
    "n_seeds",
    "seeds",
    "value_per_seed",
    "seeds_passing",
    "ci_low",
    "ci_high",
    "decided_by",
    "inconclusive_reason",
    "resolution_robust",
    "at_grid_end",
]


def _fmt(x: float) -> str:
    return "nan" if x is None or not np.isfinite(x) else f"{x:.3g}"


@dataclass
class _Seeds:
    """One row's per-seed measurements on one grid."""

    seeds: list[int]
    values: list[float]
    texts: list[str]
    ends: list[bool]
    reason: str  # why no seed could be measured ("" when some could)
    #: Per measured seed, "seed s: n of m trained scales" whose deciding cell is
    #: unsettled (docs/claims.md, "Convergence"); absent for a seed with none.
    unsettled: list[str] = field(default_factory=list)


def _measure_seeds(spec: ClaimSpec, pair: PairTables, variant, scaling, th, grid) -> _Seeds:
    out = _Seeds([], [], [], [], "")
    for seed in pair.seeds(spec.tables):
        seeded = pair.for_seed(seed, grid)
        seeded.used.clear()
        seeded.unsettled.clear()
        try:
            value, text, end = spec.measure(seeded, variant, scaling, th)
        except NotTestable as why:
            out.reason = out.reason or str(why)
            continue
        if not np.isfinite(value):
            out.reason = out.reason or f"the statistic is not finite ({text})"
            continue
        out.seeds.append(seed)
        out.values.append(float(value))
        out.texts.append(text)
        out.ends.append(bool(end))
        if seeded.unsettled:
            n, m = len(seeded.unsettled), len(seeded.used)
            out.unsettled.append(f"seed {seed}: {n} of {m} trained scales")
    if not out.seeds and not out.reason:
        try:  # no seed in common: the whole pair's look-up says which table is missing
            spec.measure(pair, variant, scaling, th)
        except NotTestable as why:
            out.reason = str(why)
        out.reason = out.reason or f"no seed shared by the {' and '.join(spec.tables)} tables"
    return out


def _verdict(spec: ClaimSpec, measured: _Seeds, t: float):
    if not measured.seeds:
        return None
    return decide(spec.passes(measured.values, t), spec.rule)


def _row(spec: ClaimSpec, pair: PairTables, variant, scaling, th) -> dict:
    t = th[spec.threshold]
    base = {
        "claim": spec.id,
        "paper_text": spec.words,
        "architecture": pair.architecture,
        "dataset": pair.dataset,
        "variant": variant,
        "scaling": scaling,
        "threshold": float(t),
        "decided_by": spec.rule,
    }
    full = _measure_seeds(spec, pair, variant, scaling, th, "full")
    decision = _verdict(spec, full, t)
    if decision is None:
        return {
            **base,
            "statistic": f"not testable: {full.reason}",
            "value": math.nan,
            "verdict": NOT_TESTABLE,
            "n_seeds": 0,
            "seeds": [],
            "value_per_seed": [],
            "seeds_passing": 0,
            "ci_low": math.nan,
            "ci_high": math.nan,
            "decided_by": "",
            "inconclusive_reason": "",
            "resolution_robust": None,
            "at_grid_end": None,
        }
    values = np.array(full.values)
    median = float(np.median(values))
    middle = int(np.argmin(np.abs(values - median)))
    per_seed = ", ".join(f"{s}: {_fmt(v)}" for s, v in zip(full.seeds, full.values, strict=True))
    statistic = (
        f"per seed, {full.texts[middle]} [seed {full.seeds[middle]} shown; values {per_seed}; "
        f"{decision.seeds_passing} of {len(values)} pass]"
    )
    robust = None
    if spec.curvature_only:
        verdicts = [_verdict(spec, _measure_seeds(spec, pair, variant, scaling, th, g), t)
                    for g in ("even", "odd")]  # fmt: skip
        robust = all(d is not None and d.verdict == decision.verdict for d in verdicts)
    low, high = interval(full.values)
    verdict, reason = decision.verdict, decision.reason
    if full.unsettled and verdict in (SUPPORTED, NOT_SUPPORTED):
        verdict, reason = INCONCLUSIVE, _unsettled_reason(full.unsettled)
    return {
        **base,
        "statistic": statistic,
        "value": median,
        "verdict": verdict,
        "n_seeds": len(values),
        "seeds": list(full.seeds),
        "value_per_seed": list(full.values),
        "seeds_passing": decision.seeds_passing,
        "ci_low": low,
        "ci_high": high,
        "inconclusive_reason": reason,
        "resolution_robust": robust,
        "at_grid_end": bool(np.mean(full.ends) > 0.5),
    }


def _unsettled_reason(per_seed: list[str]) -> str:
    """The inconclusive reason of a training row with unsettled scales (docs/claims.md,
    "Convergence")."""
    return (
        f"not converged: {', '.join(per_seed)} (best cell neither converged nor diverged "
        "at every rate)"
    )


def _tables(curvature, zone, training, kl, small_alpha=None, convergence=None) -> dict:
    return {
        "curvature": check_table("curvature", curvature),
        "zone": check_table("zone", zone),
        "training": check_table("training", training),
        "kl": check_table("kl", kl),
        "small_alpha": check_table("small_alpha", small_alpha),
        "convergence": check_table("convergence", convergence),
    }


def _rows(specs, tables: dict, th: dict) -> pd.DataFrame:
    pairs = pairs_of(tables)  # once: each pair caches its per-seed tables and curves
    rows = [
        _row(spec, pair, variant, scaling, th)
        for spec in specs
        for pair in pairs
        for variant in spec.variants
        for scaling in spec.scalings
    ]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    for column in ("resolution_robust", "at_grid_end"):
        frame[column] = frame[column].astype("boolean")
    return frame


def _claim_function(spec: ClaimSpec) -> Callable[..., pd.DataFrame]:
    def evaluate(
        curvature=None,
        zone=None,
        training=None,
        kl=None,
        thresholds=None,
        small_alpha=None,
        convergence=None,
    ):
        th = resolve_thresholds(thresholds)
        tables = _tables(curvature, zone, training, kl, small_alpha, convergence)
        return _rows([spec], tables, th)

    evaluate.__name__ = evaluate.__qualname__ = spec.id
    evaluate.__doc__ = f"Claim {spec.id}: {spec.description} (docs/claims.md)."
    return evaluate


#: Every claim as a function of the tables (same arguments as :func:`evaluate_claims`).
CLAIMS: dict[str, Callable[..., pd.DataFrame]] = {s.id: _claim_function(s) for s in SPECS}


def evaluate_claims(
    curvature: pd.DataFrame | None,
    zone: pd.DataFrame | None,
    training: pd.DataFrame | None = None,
    thresholds: dict | None = None,
    kl: pd.DataFrame | None = None,
    small_alpha: pd.DataFrame | None = None,
    convergence: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Every claim of :data:`SPECS` on every architecture/dataset pair of the tables.

    Args:
        curvature: ``results/curvature.parquet``.
        zone: ``results/goldilocks_zone.parquet`` (its ``threshold`` makes each seed's zone).
        training: ``results/training.parquet`` (None: training claims not testable).
        thresholds: overrides of :data:`DEFAULT_THRESHOLDS` (the config's ``claims:``).
        kl: ``results/kl_layernorm.parquet`` (None: the appendix E claims not testable).
        small_alpha: ``results/small_alpha.parquet`` (None: the recoverability claims
            not testable).
        convergence: ``results/convergence.parquet`` (None: no convergence check). A
            training row supported or not supported on seeds some of whose deciding
            cells did not converge is ``inconclusive`` (docs/claims.md, "Convergence").

    Returns:
        The rows of every claim, columns :data:`COLUMNS`, in the order of the paper.

    Raises:
        ValueError: an unknown or non-numeric threshold, or a table without a required
            column (one line naming them).
    """
    th = resolve_thresholds(thresholds)
    return _rows(SPECS, _tables(curvature, zone, training, kl, small_alpha, convergence), th)


__all__ = [
    "CLAIMS",
    "COLUMNS",
    "DEFAULT_THRESHOLDS",
    "INCONCLUSIVE",
    "NOT_SUPPORTED",
    "NOT_TESTABLE",
    "SPECS",
    "SUPPORTED",
    "VERDICTS",
    "ClaimSpec",
    "evaluate_claims",
    "resolve_thresholds",
]
