"""Statistics the claims and the figures share (docs/claims.md, "Conventions").

The tables a claim reads, restricted to one architecture/dataset pair
(:class:`PairTables`) and, for the per-seed decision rule (:mod:`goldilocks.decision`),
to one seed and optionally to the even or odd sub-grid of scales
(:meth:`PairTables.for_seed`). Curves, final and best accuracies, the zone look-ups
(``zone_row``, ``in_zone``, on :mod:`goldilocks.zone`'s look-ups; the final accuracy is
:func:`goldilocks.tables.final_accuracy`), grid matching and rank correlation live
here; the claims themselves in :mod:`goldilocks.claims`.

A look-up that finds nothing returns ``(None, why)``; :func:`need` and :func:`require`
turn it into :class:`NotTestable`, which the claim framework reports as a
``not_testable`` row (or a seed left out).

Torch-free: numpy, pandas, :mod:`goldilocks.tables` and :mod:`goldilocks.zone` only.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import pandas as pd

from goldilocks.cells import TRAIN_KEYS
from goldilocks.tables import final_accuracy
from goldilocks.zone import LOG_TOL, contains, goldilocks_zone, zone_row

PAPER_VARIANTS = ("homogeneous", "bias", "residual", "layernorm", "combined")
AFFINE_VARIANTS = ("layernorm_affine", "combined_affine")
VARIANTS = PAPER_VARIANTS + AFFINE_VARIANTS
#: Variants whose logits scale as alpha^1 (output exponent k = 1).
LAYERNORM_FAMILY = ("layernorm", "combined", "layernorm_affine", "combined_affine")
INHOMOGENEOUS = ("bias", "residual", *LAYERNORM_FAMILY)
WITHOUT_LAYERNORM = ("homogeneous", "bias", "residual")
RATIO = "hessian_trace_ratio"
PAIR = ["architecture", "dataset"]


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
    "convergence": [*TRAIN_KEYS, "converged", "diverged"],
    "small_alpha": [
        "architecture",
        "dataset",
        "variant",
        "seed",
        "alpha",
        "input_share_rel",
        "window",
    ],
}


def check_table(name: str, frame: pd.DataFrame | None) -> pd.DataFrame | None:
    """``frame`` checked for its required columns; None when absent or without rows."""
    if frame is None or len(frame.columns) == 0:
        return None
    missing = [c for c in REQUIRED[name] if c not in frame.columns]
    if missing:
        raise ValueError(f"claims: table '{name}' lacks column(s) {', '.join(missing)}")
    if name in ("kl", "small_alpha"):
        return frame[np.isfinite(frame["alpha"].astype(float)) & (frame["alpha"] > 0)]
    if "scale" in frame:
        return frame[np.isfinite(frame["scale"].astype(float)) & (frame["scale"] > 0)]
    return frame


# ----------------------------------------------------------------------------- helpers


def fmt(x: float) -> str:
    return "nan" if x is None or not np.isfinite(x) else f"{x:.3g}"


def log10(x) -> np.ndarray:
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
    if frame["seed"].nunique() <= 1:
        return frame
    scales = frame["scale"].nunique()
    per_seed = frame.groupby("seed")["scale"].nunique()
    full = per_seed[per_seed == scales].index
    return frame[frame["seed"].isin(full)] if len(full) else frame


def at_least(scales, bound: float) -> np.ndarray:
    """``scales >= bound`` up to :data:`LOG_TOL` in log10."""
    return log10(scales) >= math.log10(bound) - LOG_TOL


def at_most(scales, bound: float) -> np.ndarray:
    """``scales <= bound`` up to :data:`LOG_TOL` in log10."""
    return log10(scales) <= math.log10(bound) + LOG_TOL


def value_at(curve: pd.Series, x: float) -> tuple[float, bool]:
    """``curve`` (index: ascending scales) at scale ``x``, linear in log10 scale.

    Returns:
        ``(value, exact)``: exact when ``x`` is a grid scale (to :data:`LOG_TOL`); NaN when
        ``x`` lies outside the grid or either neighbouring grid value is NaN.
    """
    if not np.isfinite(x) or x <= 0 or curve.empty:
        return math.nan, False
    logs, values, lx = log10(curve.index), curve.to_numpy(float), math.log10(x)
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
    logs = log10(values)
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
    per_seed = final.groupby(["scale", "seed"])[column].max().astype(float)
    finite = per_seed[np.isfinite(per_seed.to_numpy())]
    scales = per_seed.index.get_level_values("scale").unique().sort_values()
    by_scale = finite.groupby(level="scale")
    out = pd.DataFrame(
        {
            "mean": by_scale.mean(),
            "min": by_scale.min(),
            "max": by_scale.max(),
            "seeds": by_scale.size(),
        }
    ).reindex(scales)
    out["seeds"] = out["seeds"].fillna(0).astype(int)
    per: dict = {s: {} for s in scales}
    for (scale, seed), value in finite.items():
        per[scale][int(seed)] = float(value)
    out["per_seed"] = [per[s] for s in scales]
    out = out.rename_axis("scale").reset_index()
    out["scale"] = out["scale"].astype(float)
    return out[["scale", "mean", "min", "max", "seeds", "per_seed"]]


def _cell_subset(
    groups: dict | None, table: str, variant: str, scaling: str, absent: str
) -> tuple[pd.DataFrame | None, str]:
    """The rows of ``variant``/``scaling`` of the run's ``table`` table (``groups``: its
    rows by (variant, scaling), None: no table), or None and the reason (``absent``: the
    variant has rows, but none under ``scaling``)."""
    if groups is None:
        return None, f"no {table} table"
    sub = groups.get((variant, scaling))
    if sub is not None:
        return sub, ""
    if not any(v == variant for v, _ in groups):
        return None, f"variant '{variant}' not in the {table} table"
    return None, absent


def _grouped(frame: pd.DataFrame | None) -> dict | None:
    if frame is None:
        return None
    return {key: sub for key, sub in frame.groupby(["variant", "scaling"], sort=False)}


#: The sub-grids of the resolution check: every scale, or every other one of each curve.
GRIDS = ("full", "even", "odd")


def sub_grid(frame: pd.DataFrame, grid: str) -> pd.DataFrame:
    """The rows of ``frame`` at the even (0, 2, ...) or odd positions of each curve's
    ascending scales (``grid`` ``"even"``/``"odd"``); all rows for ``"full"``."""
    if grid == "full" or frame.empty:
        return frame
    keys = [k for k in (*PAIR, "variant", "scaling") if k in frame.columns]
    position = frame.groupby(keys)["scale"].rank(method="dense").astype(int) - 1
    return frame[(position % 2) == (0 if grid == "even" else 1)]


@dataclass
class PairTables:
    """One architecture/dataset pair's tables (None: the run has no such table)."""

    architecture: str
    dataset: str
    curvature: pd.DataFrame | None
    zone: pd.DataFrame | None
    training: pd.DataFrame | None
    kl: pd.DataFrame | None
    small_alpha: pd.DataFrame | None = None
    #: ``results/convergence.parquet`` rows (docs/method.md section 5.8); None: no check.
    convergence: pd.DataFrame | None = None
    #: Per-seed tables and curves computed so far (a cache).
    _seeded: dict = field(default_factory=dict, repr=False, compare=False)
    #: Trained scales a measurement used, ``(variant, scaling, scale)``, and those of
    #: them whose deciding cell is unsettled (:meth:`check_settled`); the claim
    #: framework clears both before each measurement.
    used: set = field(default_factory=set, repr=False, compare=False)
    unsettled: set = field(default_factory=set, repr=False, compare=False)

    def seeds(self, tables: Iterable[str]) -> list[int]:
        """The seeds every one of ``tables`` (names of this pair's tables that exist) has,
        ascending; curvature and training seeds of one value share an initialisation."""
        sets = [
            set(int(s) for s in getattr(self, name)["seed"].unique())
            for name in tables
            if getattr(self, name) is not None
        ]
        return sorted(set.intersection(*sets)) if sets else []

    def for_seed(self, seed: int, grid: str = "full") -> PairTables:
        """This pair's rows of one ``seed`` (every table but the zone), on the curvature
        ``grid`` (:data:`GRIDS`); the zone is recomputed from that seed's curvature with
        the zone table's threshold (:func:`goldilocks.zone.goldilocks_zone`)."""
        key = (seed, grid)
        if key not in self._seeded:
            parts = {}
            for name in ("curvature", "training", "kl", "small_alpha", "convergence"):
                frame = getattr(self, name)
                parts[name] = None if frame is None else frame[frame["seed"] == seed]
            if parts["curvature"] is not None:
                parts["curvature"] = sub_grid(parts["curvature"], grid)
            zone = None
            if self.zone is not None and parts["curvature"] is not None:
                level = self.zone["threshold"].iloc[0] if "threshold" in self.zone else 0.5
                zone = goldilocks_zone(parts["curvature"], float(level))
            seeded = PairTables(self.architecture, self.dataset, zone=zone, **parts)
            if self.final is not None:  # one final_accuracy pass per pair, not per seed
                seeded.__dict__["final"] = self.final[self.final["seed"] == seed]
            self._seeded[key] = seeded
        return self._seeded[key]

    @functools.cached_property
    def _curvature_groups(self) -> dict | None:
        return _grouped(self.curvature)

    @functools.cached_property
    def _final_groups(self) -> dict | None:
        return _grouped(self.final)

    @functools.cached_property
    def final(self) -> pd.DataFrame | None:
        if self.training is None:
            return None
        return final_accuracy(self.training, diverged="initial")

    def curvature_rows(self, variant: str, scaling: str) -> tuple[pd.DataFrame | None, str]:
        """Curvature rows of ``variant``/``scaling``, or None and the reason."""
        absent = f"scaling '{scaling}' of '{variant}' not in the curvature table"
        sub, why = _cell_subset(self._curvature_groups, "curvature", variant, scaling, absent)
        return (None, why) if sub is None else (complete_seeds(sub), "")

    def curve(self, variant: str, scaling: str) -> tuple[pd.Series | None, str]:
        """Seed-mean Tr(H)/‖H‖_F per scale (one seed's curve after :meth:`for_seed`)."""
        key = ("curve", variant, scaling)
        if key not in self._seeded:
            sub, why = self.curvature_rows(variant, scaling)
            self._seeded[key] = (None, why) if sub is None else (seed_mean_curve(sub), "")
        return self._seeded[key]

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
        """The zone row (:func:`goldilocks.zone.zone_row`), or None and the reason."""
        return zone_row(self.zone, variant, scaling)

    def final_rows(self, variant: str, scaling: str) -> tuple[pd.DataFrame | None, str]:
        """Final-accuracy rows of ``variant``/``scaling``, or None and the reason."""
        absent = f"no training cells of '{variant}' under '{scaling}'"
        return _cell_subset(self._final_groups, "training", variant, scaling, absent)

    def best(self, variant: str, scaling: str, column: str = "train_acc"):
        """:func:`best_accuracy` of ``variant``/``scaling``, or None and the reason."""
        key = ("best", variant, scaling, column)
        if key not in self._seeded:
            sub, why = self.final_rows(variant, scaling)
            if sub is not None and column not in sub:
                sub, why = None, f"training table has no '{column}'"
            self._seeded[key] = (None, why) if sub is None else (best_accuracy(sub, column), "")
        return self._seeded[key]

    def unsettled_scales(
        self, variant: str, scaling: str, scales: Iterable[float], column: str = "train_acc"
    ) -> list[float]:
        """Those of ``scales`` (trained scales of ``variant``/``scaling``) not *decided*
        (docs/claims.md, "Convergence"): the cell that decides their best ``column``
        (the best eta0's) did not converge, and not every eta0's cell diverged. Per seed
        where the pair holds several. [] without a convergence table."""
        final, _ = self.final_rows(variant, scaling)
        if self.convergence is None or final is None or column not in final:
            return []
        keys = list(TRAIN_KEYS)
        flags = self.convergence[[*keys, "converged"]]
        cells = final.drop(columns=["converged"], errors="ignore").merge(flags, on=keys, how="left")
        cells = cells[np.isin(cells["scale"].to_numpy(float), np.asarray(list(scales), float))]
        out = set()
        for (scale, _seed), group in cells.groupby(["scale", "seed"]):
            if group["diverged"].astype(bool).all():
                continue  # every rate diverged: decided
            accuracy = group[column].astype(float)
            best = group.loc[accuracy.idxmax()] if accuracy.notna().any() else group.iloc[0]
            if not (pd.notna(best["converged"]) and bool(best["converged"])):
                out.add(float(scale))
        return sorted(out)

    def check_settled(
        self, variant: str, scaling: str, scales: Iterable[float], column: str = "train_acc"
    ) -> None:
        """Record the trained ``scales`` a training measurement used and which of them are
        unsettled (:meth:`unsettled_scales`); never raises: the statistic is still
        computed, the claim framework turns the row ``inconclusive``."""
        scales = [float(s) for s in scales]
        self.used.update((variant, scaling, s) for s in scales)
        bad = self.unsettled_scales(variant, scaling, scales, column)
        self.unsettled.update((variant, scaling, s) for s in bad)

    def best_curve(self, variant: str, scaling: str) -> tuple[pd.Series | None, str]:
        """Best final train accuracy per trained scale (index ascending), or None and why."""
        best, why = self.best(variant, scaling)
        return (None, why) if best is None else (best.set_index("scale")["mean"], "")

    def in_zone(self, variant: str, scaling: str, scales: Iterable[float]):
        """Per trained scale: True/False (inside the zone's interpolated edges, an open
        edge unbounded: :func:`goldilocks.zone.contains`), or None and the reason."""
        z, why = self.zone_row(variant, scaling)
        if z is None:
            return None, why
        mask = contains(z, scales)
        if mask is None:
            return None, f"no zone for '{variant}' under '{scaling}' (peak not positive)"
        return mask, ""

    def curvature_at(self, variant: str, scaling: str, scales: Iterable[float]):
        """Seed-mean Tr(H)/‖H‖_F at the curvature scale nearest each of ``scales``."""
        curve, why = self.curve(variant, scaling)
        if curve is None:
            return None, why
        values = []
        for s in scales:
            near = nearest_grid(curve.index, s)
            values.append(float(curve.loc[near]) if np.isfinite(near) else math.nan)
        return np.array(values, float), ""


def pairs_of(tables: dict[str, pd.DataFrame | None]) -> list[PairTables]:
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


class NotTestable(Exception):
    """Raised while a claim measures one variant/scaling: the run cannot test it (why)."""


_T = TypeVar("_T")


def need(found: tuple[_T | None, str]) -> _T:
    """The thing of a ``(thing, why)`` look-up such as :meth:`PairTables.curve`.

    Raises:
        NotTestable: ``why``, when the thing is None.
    """
    thing, why = found
    if thing is None:
        raise NotTestable(why)
    return thing


def require(condition: bool, why: str) -> None:
    """Raises :class:`NotTestable` (``why``) unless ``condition``."""
    if not condition:
        raise NotTestable(why)
