"""The workflow's plan of the job graph from a validated config (torch-free).

What the rules in ``workflow/rules/`` build, decided here so that it can be unit-tested
without Snakemake: the path patterns of every stage, the cells of each stage, which
aggregated tables exist (one per pair and scaling that has cells), which figures a
config can draw and for which pairs (from :mod:`goldilocks.figure_spec`), the default
targets, and the one-line message when a figure asked for has no data. The workflow
builds one :class:`Plan` at parse time (``workflow/rules/common.smk``); its input
functions only look things up in it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from goldilocks import cells, grid, variants
from goldilocks.figure_spec import BY_NUMBER, SPEC

CURVATURE_PATTERN = (
    "results/curvature/{architecture}_{dataset}/{variant}/{scaling}/scale{scale}_seed{seed}.parquet"
)
#: A curvature cell's per-layer weight-to-gradient ratios, beside its row.
LAYERS_PATTERN = CURVATURE_PATTERN.replace(".parquet", ".layers.parquet")
TRAIN_PATTERN = (
    "results/train/{architecture}_{dataset}/{variant}/{scaling}/"
    "scale{scale}_lr{lr_base}_seed{seed}.parquet"
)
#: The aggregated tables of one pair and scaling (kind: curvature, layer_ratios, zone,
#: training).
TABLE = "results/aggregate/{kind}_{architecture}_{dataset}_{scaling}.parquet"
INIT_PATTERN = "results/init/{architecture}_{dataset}/{variant}/seed{seed}.pt"
#: A registered model's config entry; its init jobs read it (rule model_spec).
MODEL_SPEC = "results/models/{architecture}.json"
KL_TABLE = "results/kl/{architecture}_{dataset}.parquet"
#: The small-alpha side table of one pair (logit norm, input-dependent share, measured m).
SMALL_ALPHA_TABLE = "results/small_alpha/{architecture}_{dataset}.parquet"
#: Training checkpoints: side files of running train jobs, deleted when the cell finishes.
CHECKPOINT_PATTERN = TRAIN_PATTERN.replace("results/train/", "results/checkpoints/").replace(
    ".parquet", ".pt"
)
#: Figure N of one pair; ``{n}`` is filled in per figure (one rule each).
FIGURE = "results/figures/fig{n}_{architecture}_{dataset}.{ext}"
FIGURE_EXTENSIONS = ("pdf", "png")
TRAINED = "in training.scalings (and training.enabled: true)"
NUMBER = r"[0-9][0-9.e+-]*"


def constraints() -> dict[str, str]:
    """The wildcards' regular expressions (the names the registry and grid know)."""
    return {
        "architecture": "|".join(variants.architecture_names()),
        "dataset": "|".join(variants.DATASETS),
        "variant": "|".join(variants.variant_names()),
        "scaling": "|".join(grid.SCALINGS),
        "scale": NUMBER,
        "lr_base": NUMBER,
        "seed": r"\d+",
        "n": "|".join(str(f.number) for f in SPEC),
    }


def figure_path(n: int, architecture: str, dataset: str, ext: str) -> str:
    return FIGURE.format(n=n, architecture=architecture, dataset=dataset, ext=ext)


class Plan:
    """The job graph's shape for one validated config (``config`` as Snakemake has it)."""

    def __init__(self, config: Mapping):
        self.config = config
        self.curvature_cells = cells.curvature_cells(config)
        #: joint cells that also make the joint_residual curve of a variant with m = k.
        self.shared_cells = cells.shared_curvature_cells(config)
        self.train_cells = cells.train_cells(config)
        self.pairs = grid.unique((p["architecture"], p["dataset"]) for p in config["pairs"])
        self.training = bool(self.train_cells)
        #: The pairs with training cells (training.pairs; default every pair).
        self.trained_pairs = grid.unique(cells.trained_pairs(config)) if self.training else []
        #: The (architecture, dataset, scaling) parts that have cells, per stage.
        self.parts = {
            "curvature": {(c.architecture, c.dataset, c.scaling) for c in self.curvature_cells}
            | {(c.architecture, c.dataset, "joint_residual") for c in self.shared_cells},
            "training": {(c.architecture, c.dataset, c.scaling) for c in self.train_cells},
        }
        #: Configured scalings with curvature cells (the zone) and with training cells.
        self.scalings_of = {
            "curvature": list(config["curvature"]["scalings"]),
            "training": list(config["training"]["scalings"]) if self.training else [],
        }
        #: Figure 3: per pair, its LayerNorm variants with k = 1, every seed.
        self.kl_cells = {
            pair: [(v, s) for v in cells.kl_variants(config, pair[0]) for s in config["seeds"]]
            for pair in self.pairs
        }
        self.kl_pairs = [pair for pair in self.pairs if self.kl_cells[pair]]
        #: The small-alpha side table: per pair, its variants with an m, every seed.
        self.small_alpha_cells = {
            pair: [
                (v, s) for v in cells.small_alpha_variants(config, pair[0]) for s in config["seeds"]
            ]
            for pair in self.pairs
        }
        self.small_alpha_pairs = [p for p in self.pairs if self.small_alpha_cells[p]]

    # -- cells and tables ---------------------------------------------------------------

    def cells_of(self, stage: str, architecture: str, dataset: str, scaling: str) -> list:
        """The ``stage`` (curvature or training) cells of one pair and scaling; for
        ``joint_residual`` also the joint cells of the variants with m = k
        (:func:`goldilocks.cells.borrows_joint`)."""
        of = self.curvature_cells if stage == "curvature" else self.train_cells
        keys = (architecture, dataset, scaling)
        own = [c for c in of if (c.architecture, c.dataset, c.scaling) == keys]
        if stage == "curvature" and scaling == "joint_residual":  # m = k: the joint cells
            own += [c for c in self.shared_cells if (c.architecture, c.dataset) == keys[:2]]
        return own

    def table_parts(
        self, kind: str, scalings: Iterable[str] | None = None, pair: tuple[str, str] | None = None
    ) -> list[str]:
        """Aggregated tables of ``kind``, one per pair and scaling (``pair``: just that one).

        ``scalings``: those wanted (default every configured one); unconfigured ones, and
        (pair, scaling) parts without a cell (joint_residual of a pair with no residual
        variant, an untrained pair), are left out. ``kind`` curvature, layer_ratios or
        zone come from the curvature cells, training from the training cells.
        """
        stage = "training" if kind == "training" else "curvature"
        wanted = None if scalings is None else set(scalings)
        return [
            TABLE.format(kind=kind, architecture=a, dataset=d, scaling=s)
            for a, d in ([pair] if pair else self.pairs)
            for s in self.scalings_of[stage]
            if (wanted is None or s in wanted) and (a, d, s) in self.parts[stage]
        ]

    def kl_tables(self) -> list[str]:
        """Figure 3's table of every pair that has LayerNorm variants."""
        return [KL_TABLE.format(architecture=a, dataset=d) for a, d in self.kl_pairs]

    def small_alpha_tables(self) -> list[str]:
        """The small-alpha side table of every pair that has variants with an m."""
        return [
            SMALL_ALPHA_TABLE.format(architecture=a, dataset=d) for a, d in self.small_alpha_pairs
        ]

    def small_alpha_grids(self, architecture: str) -> dict[str, list[float]]:
        """Per variant of the side table, the alphas of its joint_residual grid."""
        scales = self.config["curvature"]["scales"]
        return {
            v: grid.scales_of(scales, "joint_residual", variants.describe(architecture, v))
            for v in cells.small_alpha_variants(self.config, architecture)
        }

    # -- figures ------------------------------------------------------------------------

    def figure_pairs(self, n: int) -> list[tuple[str, str]]:
        """The pairs figure ``n`` is drawn for: a KL figure only those with LayerNorm
        variants, a training figure only the trained pairs, else every pair."""
        spec = BY_NUMBER[n]
        if spec.needs_kl:
            return self.kl_pairs
        return self.trained_pairs if spec.trained else self.pairs

    def _requirement(self, n: int) -> tuple[str, bool]:
        """What figure ``n`` needs of the config, and whether the config has it."""
        spec = BY_NUMBER[n]
        if spec.needs_kl:
            needs = "a LayerNorm variant with k = 1 in variants (layernorm, combined, ...)"
            return needs, bool(self.kl_pairs)
        wanted = spec.tables.get("training", "") if spec.trained else ""
        if wanted is None:
            return f"a scaling {TRAINED}", self.training
        missing = [s for s in wanted if s not in self.scalings_of["training"]]
        return " and ".join(f"'{s}' {TRAINED}" for s in missing), not missing

    def figure_problem(self, n: int, pair: tuple[str, str] | None = None) -> str | None:
        """Why figure ``n`` (of ``pair``, when given) cannot be drawn from this config, or
        None when it can."""
        requirement, present = self._requirement(n)
        if present and pair is not None and pair not in self.figure_pairs(n):
            a, d = pair
            present, requirement = False, f"LayerNorm variants with k = 1 in the pair {a}/{d}"
            if pair not in self.pairs:
                configured = ", ".join(f"{x}/{y}" for x, y in self.pairs)
                requirement = f"{a}/{d} in pairs (configured: {configured})"
            elif BY_NUMBER[n].trained:
                trained = ", ".join(f"{x}/{y}" for x, y in self.trained_pairs)
                requirement = f"{a}/{d} in training.pairs (trained: {trained})"
        return None if present else f"figure {n} needs {requirement}"

    def figure_tables(self, n: int, architecture: str, dataset: str) -> dict:
        """The tables figure ``n`` of one pair is drawn from, by kind (the rule's inputs):
        the KL table's path, else the list of that pair's parts (one per scaling)."""
        pair = (architecture, dataset)
        return {
            kind: KL_TABLE.format(architecture=architecture, dataset=dataset)
            if kind == "kl"
            else self.table_parts(kind, scalings, pair)
            for kind, scalings in BY_NUMBER[n].tables.items()
        }

    def figure_outputs(self, n: int) -> list[str]:
        """PDF and PNG of figure ``n`` for every pair it is drawn for."""
        return [figure_path(n, a, d, e) for a, d in self.figure_pairs(n) for e in FIGURE_EXTENSIONS]

    def drawable(self) -> list[int]:
        """The figures this config has data for."""
        return [f.number for f in SPEC if self.figure_problem(f.number) is None]

    def figure_targets(self) -> list[str]:
        """Every file of every figure the config has data for (part of rule all)."""
        return [path for n in self.drawable() for path in self.figure_outputs(n)]
