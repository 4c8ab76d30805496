"""Calibration of every claim (docs/claims.md, "Calibration"): on synthetic seeds whose
true per-seed statistic sits at the threshold (the null) at most 10% of rows come out
``supported``; 2.5 per-seed standard deviations on the claimed side (the effect), at
least 90%. 200 fixed-seed replicates of 6 seeds each; the rates are printed (pytest -s).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from goldilocks import claims_calibration, claims_spec
from goldilocks.claims_spec import SPECS, resolve_thresholds

REPLICATES, SEEDS = 200, 6
#: When the first calibration test started (not when the module was collected: tests of
#: other modules that run before it must not count against its time).
_START: list[float] = []


@pytest.mark.parametrize("spec", SPECS, ids=[s.id for s in SPECS])
def test_claim_is_calibrated(spec):
    if not _START:
        _START.append(time.perf_counter())
    th = resolve_thresholds(None)
    c = claims_calibration.calibrate(spec, th, REPLICATES, SEEDS, rng_seed=0)
    print(
        f"\n{spec.id}: null {c.null_supported:.3f} supported (true {c.null_true:.4g}), "
        f"effect {c.effect_supported:.3f} (true {c.effect_true:.4g}, per-seed sd "
        f"{c.seed_sd:.3g} on the {spec.scale} scale)"
    )
    assert c.null_supported <= 0.10
    assert c.effect_supported >= 0.90
    assert time.perf_counter() - _START[0] < 60  # every claim's calibration together


def test_generators_hit_their_true_value_without_noise(monkeypatch):
    """Each generator's noiseless statistic is the true value it is asked for (so the
    null really sits at the threshold)."""
    noise = ("OFFSET_SD", "NOISE_SD", "ACC_OFFSET_SD", "ACC_NOISE_SD", "ROUNDING_SD", "ZONE_SD")
    for name in (*noise, "LOG_OFFSET_SD", "LOG_NOISE_SD"):
        monkeypatch.setattr(claims_calibration, name, 0.0)
    th = resolve_thresholds(None)
    rng = np.random.default_rng(0)
    exact = {  # generators with a deterministic statistic at zero noise
        "identity_spread": 0.3,
        "identity_gap": 0.3,
        "spread_4": 0.3,
        "recoverable_4": 0.3,
        "zone_shift": 0.3,
        "departure": 0.3,
        "peak": 0.3,
        "minimum": -0.3,
        "log_maximum": 0.02,
        "zone_mean": 0.05,
        "zone_best": 0.05,
        "slopes": -0.05,
        "wide": 0.6,
        "median_gap": 0.05,
        "deficit": 0.1,
    }
    for name, true in exact.items():
        value = getattr(claims_calibration, name)(true, rng, th)
        assert value == pytest.approx(true, abs=1e-6), name
    assert claims_calibration.ratio(0.4, rng, th) == pytest.approx(0.4)
    assert {s.calibration.__name__ for s in claims_spec.SPECS} <= set(dir(claims_calibration))
