"""The decision rule: the exact sign test's cut-offs and error rates, the tolerance rule."""

from __future__ import annotations

import math

import pytest

from goldilocks import decision
from goldilocks.decision import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, decide


def test_passes_needed_matches_the_exact_sign_test_at_level_010():
    # The table: 4 of 4, 5 of 5, 6 of 6, 6 of 7, 7 of 8; fewer than 4 seeds: none.
    assert [decision.passes_needed(n) for n in range(1, 9)] == [None, None, None, 4, 5, 6, 6, 7]
    assert decision.MIN_SEEDS == 4
    for n in range(4, 30):
        k = decision.passes_needed(n)
        assert decision.binomial_tail(n, k) <= 0.10 < decision.binomial_tail(n, k - 1)
        assert decision.false_decision_rate(n) <= 0.10


def test_false_decision_rates():
    assert decision.false_decision_rate(4) == pytest.approx(1 / 16)
    assert decision.false_decision_rate(6) == pytest.approx(1 / 64)
    assert decision.false_decision_rate(7) == pytest.approx(8 / 128)
    assert decision.false_decision_rate(8) == pytest.approx(9 / 256)
    assert decision.false_decision_rate(3) == 0.0  # never decides


def test_sign_test_verdicts_and_reasons():
    rule = decision.SIGN_TEST
    assert decide([True] * 4, rule).verdict == SUPPORTED
    assert decide([False] * 4, rule).verdict == NOT_SUPPORTED
    split = decide([True, True, True, False], rule)
    assert split.verdict == INCONCLUSIVE and split.seeds_passing == 3
    assert split.reason.startswith("split seeds: 3 of 4 pass")
    few = decide([True, True], rule)
    assert few.verdict == INCONCLUSIVE and few.reason.startswith("too few seeds: 2")
    assert decide([True] * 6 + [False], rule).verdict == SUPPORTED
    assert decide([True] * 5 + [False] * 2, rule).verdict == INCONCLUSIVE
    assert decide([], rule).verdict == decision.NOT_TESTABLE


def test_tolerance_rule_needs_one_seed_and_every_seed():
    rule = decision.TOLERANCE
    assert decide([True], rule).verdict == SUPPORTED
    assert decide([True, True, False], rule).verdict == NOT_SUPPORTED
    with pytest.raises(ValueError, match="decision rule 'vote'"):
        decide([True], "vote")


def test_interval_is_the_per_seed_range():
    assert decision.interval([0.3, -1.0, math.nan, 2.0]) == (-1.0, 2.0)
    assert all(math.isnan(v) for v in decision.interval([math.nan]))
