"""The decision rule: from per-seed verdicts to one claim row's verdict (docs/claims.md,
"Deciding over seeds").

Each claim computes its statistic on every seed separately (curvature and training seeds
of one value share an initialisation and stay paired) and compares each seed's value
with the threshold. The row's verdict then comes from one of two rules:

- :data:`SIGN_TEST`: an exact one-sided sign test at level :data:`LEVEL`. ``supported``
  needs at least :func:`passes_needed` of the n seeds passing, ``not_supported`` as many
  failing, anything else is ``inconclusive``. When the per-seed statistic's median sits
  exactly at the threshold, each seed passes with probability 1/2 and a wrong decision
  happens with probability :func:`false_decision_rate` (at most :data:`LEVEL`).
- :data:`TOLERANCE`: the exact identities of docs/method.md section 4.8 hold in exact
  arithmetic on every seed, so a numerical tolerance decides: ``supported`` when every
  seed is within it (one seed suffices), ``not_supported`` when any seed is not.

Pure Python; no numpy or pandas.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

SUPPORTED, NOT_SUPPORTED = "supported", "not_supported"
INCONCLUSIVE, NOT_TESTABLE = "inconclusive", "not_testable"
VERDICTS = (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, NOT_TESTABLE)

#: Level of the one-sided sign test.
LEVEL = 0.10
#: ``decided_by`` of the sign test and of the tolerance rule.
SIGN_TEST = "sign_test_0.10"
TOLERANCE = "tolerance"
RULES = (SIGN_TEST, TOLERANCE)


def binomial_tail(n: int, k: int) -> float:
    """P(X >= k) for X ~ Binomial(n, 1/2)."""
    return sum(math.comb(n, i) for i in range(max(k, 0), n + 1)) / 2**n


def passes_needed(n: int, level: float = LEVEL) -> int | None:
    """Fewest passing seeds out of ``n`` that the sign test accepts: the smallest k with
    P(Binomial(n, 1/2) >= k) <= ``level``; None when even n of n is not enough (n < 4 at
    level 0.10)."""
    for k in range(n + 1):
        if binomial_tail(n, k) <= level:
            return k
    return None


def false_decision_rate(n: int, level: float = LEVEL) -> float:
    """Chance that the sign test decides a given way on ``n`` seeds when each seed passes
    with probability 1/2 (the per-seed statistic's median exactly at the threshold)."""
    k = passes_needed(n, level)
    return 0.0 if k is None else binomial_tail(n, k)


MIN_SEEDS = next(n for n in range(1, 64) if passes_needed(n) is not None)


@dataclass(frozen=True)
class Decision:
    """One row's verdict, the seeds that passed, and why it is inconclusive ("" else)."""

    verdict: str
    seeds_passing: int
    reason: str = ""


def decide(passes: Sequence[bool], rule: str) -> Decision:
    """The verdict of one row from its per-seed comparisons (``True``: that seed's value
    passes the claim's comparator).

    Raises:
        ValueError: an unknown ``rule``.
    """
    n, k = len(passes), int(sum(bool(p) for p in passes))
    if n == 0:
        return Decision(NOT_TESTABLE, 0, "")
    if rule == TOLERANCE:
        return Decision(SUPPORTED if k == n else NOT_SUPPORTED, k)
    if rule != SIGN_TEST:
        raise ValueError(f"decision rule {rule!r}: not one of {', '.join(RULES)}")
    need = passes_needed(n)
    if need is None:
        why = f"too few seeds: {n} (the sign test needs {MIN_SEEDS})"
        return Decision(INCONCLUSIVE, k, why)
    if k >= need:
        return Decision(SUPPORTED, k)
    if n - k >= need:
        return Decision(NOT_SUPPORTED, k)
    return Decision(INCONCLUSIVE, k, f"split seeds: {k} of {n} pass (needs {need} either way)")


def interval(values: Sequence[float]) -> tuple[float, float]:
    """The display interval of the per-seed values: their range (min, max; NaN if none).
    With 2-8 seeds a bootstrap interval would be the same range (2 seeds have 3 distinct
    resamples)."""
    finite = [v for v in values if math.isfinite(v)]
    return (min(finite), max(finite)) if finite else (math.nan, math.nan)
