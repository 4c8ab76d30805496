"""Grid cells: one Snakemake job each, built once from the config or from wildcards
(torch-free; docs/method.md section 2).

A :class:`CurvatureCell` is (architecture, dataset, variant, scaling, scale, seed); a
:class:`TrainCell` adds the base learning rate. A cell knows its alpha, T and (training)
learning rate, and the identity columns every table row of it starts with
(:meth:`CurvatureCell.identity`): the one definition of those columns. Field names equal
the workflow's wildcard names, so ``PATTERN.format(**cell.wildcards())`` is the cell's path.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, fields

from goldilocks.grid import (
    alpha_and_temperature,
    applies,
    canonical_scale,
    lr_factor,
    scale_token,
)
from goldilocks.grid import scales_of as _scales_of
from goldilocks.variants import Description, describe

#: Columns that identify a curvature cell's rows, in table order.
CURVATURE_IDENTITY: tuple[str, ...] = (
    "architecture",
    "dataset",
    "variant",
    "scaling",
    "scale",
    "alpha",
    "temperature",
    "seed",
)
#: Columns that identify a training cell's rows, in table order.
TRAIN_IDENTITY: tuple[str, ...] = (*CURVATURE_IDENTITY, "lr_base", "lr")
#: The grid axes of a cell (its wildcards), the sort order of every table.
CURVATURE_KEYS: tuple[str, ...] = ("architecture", "dataset", "variant", "scaling", "scale", "seed")
#: The axes of one training cell (its final row is its result).
TRAIN_KEYS: tuple[str, ...] = (*CURVATURE_KEYS, "lr_base")


@dataclass(frozen=True)
class CurvatureCell:
    """One curvature job: its grid axes (``scale`` as its canonical token)."""

    architecture: str
    dataset: str
    variant: str
    scaling: str
    scale: str
    seed: int

    @classmethod
    def from_wildcards(cls, wildcards: Mapping, **extra):
        """The cell of a job's wildcards (strings), with any extra fields (``extra``, e.g.
        a training cell's ``alpha_lr_rule``)."""
        names = set(wildcards.keys())  # a Snakemake Namedlist's `in` tests values, not names
        values = {f.name: wildcards[f.name] for f in fields(cls) if f.name in names}
        values.update(extra)
        values["seed"] = int(values["seed"])
        for token in ("scale", "lr_base"):  # canonical spelling, whatever the wildcard says
            if token in values:
                values[token] = scale_token(float(values[token]))
        return cls(**values)

    @property
    def description(self) -> Description:
        """L, 𝓛, k and the switches of the cell's architecture variant."""
        return describe(self.architecture, self.variant)

    @property
    def scale_value(self) -> float:
        """The scale the job uses (the canonical token parsed back)."""
        return canonical_scale(self.scale)

    @functools.cached_property
    def alpha_temperature(self) -> tuple[float, float]:
        """``(alpha, T)`` of the cell's scaling at its scale."""
        return alpha_and_temperature(
            self.scaling, self.scale_value, self.architecture, self.variant
        )

    @property
    def alpha(self) -> float:
        return self.alpha_temperature[0]

    @property
    def temperature(self) -> float:
        return self.alpha_temperature[1]

    def wildcards(self) -> dict[str, str | int]:
        """The cell's fields, for formatting path patterns."""
        return asdict(self)

    def identity(self) -> dict[str, str | int | float]:
        """The identity columns (:data:`CURVATURE_IDENTITY`) of the cell's rows."""
        return {
            "architecture": self.architecture,
            "dataset": self.dataset,
            "variant": self.variant,
            "scaling": self.scaling,
            "scale": self.scale_value,
            "alpha": self.alpha,
            "temperature": self.temperature,
            "seed": self.seed,
        }


@dataclass(frozen=True)
class TrainCell(CurvatureCell):
    """One training job: a curvature cell's axes plus ``lr_base`` (token), and the rule
    that turns it into the rate used (``training.alpha_lr_rule``)."""

    lr_base: str = "1"
    alpha_lr_rule: str = "paper"

    @property
    def lr_base_value(self) -> float:
        return canonical_scale(self.lr_base)

    @functools.cached_property
    def lr(self) -> float:
        """The learning rate used: ``lr_base`` times the scaling's factor."""
        factor = lr_factor(
            self.scaling, self.scale_value, self.architecture, self.variant, self.alpha_lr_rule
        )
        return self.lr_base_value * factor

    def identity(self) -> dict[str, str | int | float]:
        """The identity columns (:data:`TRAIN_IDENTITY`) of the cell's rows."""
        return {**super().identity(), "lr_base": self.lr_base_value, "lr": self.lr}


def variants_of(config: Mapping, architecture: str) -> list[str]:
    """The variants a pair of ``architecture`` runs: a registered model's own list
    (``models.<name>.variants``, docs/method.md section 3.5), else the global ``variants``."""
    models = config.get("models") or {}
    if architecture in models:
        return list(models[architecture]["variants"])
    return list(config["variants"])


def kl_variants(config: Mapping, architecture: str) -> list[str]:
    """Figure 3's variants of a pair: those with LayerNorm whose logits scale linearly
    with alpha (``norm`` and ``k = 1``; for the built-ins, every LayerNorm variant)."""
    out = []
    for variant in variants_of(config, architecture):
        d = describe(architecture, variant)
        if d.variant.norm and d.linear_output:
            out.append(variant)
    return out


def small_alpha_variants(config: Mapping, architecture: str) -> list[str]:
    """The small-alpha side table's variants of a pair: those with a small-alpha exponent
    ``m`` (every built-in), when ``joint_residual`` is a curvature scaling; else none."""
    if "joint_residual" not in config["curvature"]["scalings"]:
        return []
    return [
        v
        for v in variants_of(config, architecture)
        if describe(architecture, v).small_alpha_exponent is not None
    ]


def _pairs(config: Mapping) -> list[tuple[str, str]]:
    return [(p["architecture"], p["dataset"]) for p in config["pairs"]]


def trained_pairs(config: Mapping) -> list[tuple[str, str]]:
    """The (architecture, dataset) pairs that are trained: ``training.pairs`` (each one of
    ``pairs``), or every pair when it is null; in the order of ``pairs``."""
    chosen = config["training"].get("pairs")
    if not chosen:
        return _pairs(config)
    wanted = {(p["architecture"], p["dataset"]) for p in chosen}
    return [pair for pair in _pairs(config) if pair in wanted]


def _axes(config: Mapping, stage: str) -> Iterator[tuple[str, str, str, str, str]]:
    """(architecture, dataset, variant, scaling, scale token) of ``stage``'s grid, in order
    (training: of the trained pairs only)."""
    section = config[stage]
    for arch, data in trained_pairs(config) if stage == "training" else _pairs(config):
        for variant in variants_of(config, arch):
            description = describe(arch, variant)
            for scaling in (s for s in section["scalings"] if applies(s, description)):
                if stage == "curvature" and borrows_joint(config, scaling, description):
                    continue  # the joint cells are this curve's (shared_curvature_cells)
                for scale in _scales_of(section["scales"], scaling, description):
                    yield arch, data, variant, scaling, scale_token(scale)


def borrows_joint(config: Mapping, scaling: str, description) -> bool:
    """Whether a variant's ``joint_residual`` curve is its ``joint`` curve: m = k (the
    same alpha and T = alpha^m = alpha^k at every scale of the same grid) and ``joint``
    is configured, so no cell of its own is computed (docs/method.md section 2.2)."""
    return (
        scaling == "joint_residual"
        and "joint" in config["curvature"]["scalings"]
        and description.small_alpha_exponent == description.output_exponent
    )


def shared_curvature_cells(config: Mapping) -> list[CurvatureCell]:
    """The ``joint`` cells that stand in for ``joint_residual`` cells (:func:`borrows_joint`);
    their rows are relabelled ``joint_residual`` when that part is aggregated."""
    if "joint_residual" not in config["curvature"]["scalings"]:
        return []
    borrowers = {
        (a, v)
        for a, _ in _pairs(config)
        for v in variants_of(config, a)
        if applies("joint_residual", describe(a, v))
        and borrows_joint(config, "joint_residual", describe(a, v))
    }
    return [
        c
        for c in curvature_cells(config)
        if c.scaling == "joint" and (c.architecture, c.variant) in borrowers
    ]


def curvature_cells(config: Mapping) -> list[CurvatureCell]:
    """Every curvature cell of the config: pairs x variants x scalings x scales x seeds."""
    return [
        CurvatureCell(*axes, seed)
        for axes in _axes(config, "curvature")
        for seed in config["seeds"]
    ]


def train_cells(config: Mapping) -> list[TrainCell]:
    """Every training cell: trained pairs x variants x scalings x scales x lr_base x seeds.

    ``training.pairs`` (when set) limits the pairs (:func:`trained_pairs`);
    ``training.seeds`` (when set) replaces the global seeds for training only.
    """
    tr = config["training"]
    if not tr.get("enabled", True):
        return []
    rule, seeds = tr.get("alpha_lr_rule", "paper"), tr.get("seeds") or config["seeds"]
    return [
        TrainCell(*axes, seed, scale_token(lr), rule)
        for axes in _axes(config, "training")
        for lr in tr["lr_base"]
        for seed in seeds
    ]


def batch_limit(
    batch_cells: int,
    *,
    main_process: bool,
    cores: int | None,
    nodes: int | None,
    train_jobs: int | None,
) -> tuple[int, str | None]:
    """The most cells one batch can hold in this Snakemake process, and a warning when
    that is fewer than ``training.batch_cells`` (docs/method.md section 5.7).

    A batch forms only from train jobs that run at once as threads of one process. A
    job in a process of its own (a cluster job, a local job run as a subprocess:
    ``main_process`` false) can only train alone, so its limit is 1 and it does not wait
    ``batch_wait`` for mates that cannot come. In the main process of a local run at most
    ``cores`` jobs run at once, and at most ``train_jobs`` train jobs where that resource
    is set (``profiles/gpu``); a run that sends its jobs elsewhere (``nodes`` set) limits
    nothing here. The limit changes how many cells meet, never a result.
    """
    if not main_process:
        return 1, None
    if nodes is not None or cores is None:
        return batch_cells, None
    at_once = cores if train_jobs is None else min(cores, train_jobs)
    if at_once >= batch_cells:
        return batch_cells, None
    if at_once == cores:
        why = f"--cores {cores}"
        fix = (
            "on a GPU run --workflow-profile profiles/gpu (not --profile; no --cores), "
            "on a CPU set batch_cells: 1"
        )
    else:
        why = f"resources train_jobs={train_jobs}"
        fix = "raise train_jobs (twice batch_cells lets one batch form while one trains)"
    warning = (
        f"goldilocks: training.batch_cells is {batch_cells} but at most {at_once} train "
        f"jobs run at once here ({why}), so batches hold at most {at_once} cells: {fix}"
    )
    return max(at_once, 1), warning
