"""The figures, one entry each: the one place a figure is declared (docs/method.md section 6).

Torch-free and matplotlib-free: the workflow reads it at every parse. From an entry
:mod:`goldilocks.plan` derives the figure's rules, path pattern, wildcard constraint,
default targets and the message saying what a config lacks for it;
:data:`goldilocks.figures.FIGURES` maps its number to its drawing function; README's
figure table repeats ``message`` and ``tables`` (tests/test_plan.py checks it).

Adding a figure: its drawing function in ``goldilocks.figures`` (the module of its kind),
one :class:`Figure` entry below, and its caption ``workflow/report/fig<N>.rst``.

What a figure needs and which pairs it is drawn for follow from its tables:

- ``training`` (a scaling list, or None: any trained scaling): those scalings in
  ``training.scalings``; drawn for the trained pairs (``training.pairs``);
- ``kl``: a LayerNorm variant with k = 1 in ``variants``; drawn for the pairs that have
  one;
- otherwise (``curvature``, ``zone``): always; drawn for every pair.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

#: The tables a figure can be drawn from: the per-pair tables of the aggregate stage
#: (one part per scaling) and figure 3's per-pair KL table.
TABLE_KINDS = ("curvature", "training", "zone", "kl")


@dataclass(frozen=True)
class Figure:
    """One figure.

    Attributes:
        number: N in ``results/figures/fig<N>_<arch>_<data>.{pdf,png}`` and rule ``figN``.
        function: its drawing function's name in :mod:`goldilocks.figures`; it takes the
            tables of ``tables`` as keyword arguments (None where the run has none).
        kind: ``line``, ``heatmap`` or ``scatter``: the module it is drawn in.
        tables: table kind -> the scalings it is drawn from (None: every configured one).
        message: what it shows, one line (README's figure table, the report's category).
    """

    number: int
    function: str
    kind: str
    tables: Mapping[str, tuple[str, ...] | None]
    message: str

    def __post_init__(self):
        unknown = set(self.tables) - set(TABLE_KINDS)
        if unknown:
            raise ValueError(f"figure {self.number}: unknown table kinds {sorted(unknown)}")

    @property
    def trained(self) -> bool:
        """Drawn from training cells: needs training, drawn for the trained pairs only."""
        return "training" in self.tables

    @property
    def needs_kl(self) -> bool:
        """Drawn from the KL table: needs a LayerNorm variant with k = 1."""
        return "kl" in self.tables


SPEC: tuple[Figure, ...] = (
    Figure(
        1,
        "figure_1",
        "line",
        {"curvature": None, "zone": None},
        "Tr(H)/‖H‖_F against the scale: rows alpha / joint / temperature, columns variants; "
        "zone shaded",
    ),
    Figure(
        2,
        "figure_2",
        "heatmap",
        {"training": ("temperature",), "zone": ("temperature",)},
        "final train accuracy over T x eta0, one panel per variant, temperature zone dashed",
    ),
    Figure(
        3,
        "figure_3",
        "line",
        {"kl": None},
        "LayerNorm variants: KL(softmax(alpha f) ‖ softmax(f_alpha)) and the relative logit "
        "deviation against alpha (paper Appendix E)",
    ),
    Figure(
        4,
        "figure_4",
        "heatmap",
        {"training": ("alpha",), "zone": ("alpha",)},
        "alpha scaling: final train (top) and test (bottom) accuracy over alpha x eta0, "
        "alpha zone dashed",
    ),
    Figure(
        5,
        "figure_5",
        "heatmap",
        {"training": ("temperature",), "zone": ("temperature",)},
        "temperature scaling: final test accuracy over T x eta0, zone dashed",
    ),
    Figure(
        6,
        "figure_6",
        "line",
        {"curvature": None},
        "beyond the paper: Tr/‖.‖_F and spectral norm of Hessian, G-term and H-term against "
        "the scale, two rows per scaling, columns variants (Vysogorets et al., figure 2)",
    ),
    Figure(
        7,
        "figure_7",
        "scatter",
        {"curvature": None, "training": None, "zone": None},
        "beyond the paper: initial Tr(H)/‖H‖_F against best final train accuracy, one point "
        "per trained scale, one panel per variant, zone cells ringed",
    ),
)

#: The figures by number.
BY_NUMBER: dict[int, Figure] = {f.number: f for f in SPEC}
