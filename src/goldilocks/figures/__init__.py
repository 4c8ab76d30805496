"""Figures drawn from the aggregated Parquet tables (docs/method.md section 6).

Each ``figure_<n>`` function takes DataFrames (the tables under ``results/``, whole or
filtered to one architecture/dataset pair) and returns a matplotlib ``Figure``, so it
works the same from a notebook and from the workflow (:func:`save`)::

    zone = pd.read_parquet("results/goldilocks_zone.parquet")
    training = pd.read_parquet("results/training.parquet")
    figure_4(training, zone).savefig("fig4.pdf")

Which figure shows what, from which tables, is declared once in
:mod:`goldilocks.figure_spec`; :data:`FIGURES` maps its numbers to the functions here.
The code is split by kind: :mod:`.lines` (figures 1, 3, 6), :mod:`.heatmaps` (2, 4, 5),
:mod:`.scatter` (7) and the shared :mod:`.style`.

Figures are sized for the full width of a two-column paper (7.2 in, 7-8 pt text) and use
the object-oriented API under a local style (no pyplot state, no global rcParams change,
no backend chosen: importing this package leaves the caller's matplotlib backend alone;
the workflow's figure script chooses Agg). Lines are seed means with a min-max band over
seeds; heatmaps show seed means with one colour scale per row; log axes name the symbol
and the range they span.
"""

from __future__ import annotations

from collections.abc import Callable

from matplotlib.figure import Figure

from goldilocks.figure_spec import SPEC
from goldilocks.figures import heatmaps, lines, scatter
from goldilocks.figures.heatmaps import (
    MAX_TICKS,
    accuracy_heatmap,
    figure_2,
    figure_4,
    figure_5,
    figure_heatmaps,
)
from goldilocks.figures.lines import (
    KL_FLOOR,
    REL_FLOOR,
    curve_with_band,
    figure_1,
    figure_3,
    figure_6,
)
from goldilocks.figures.scatter import IN_ZONE, figure_7
from goldilocks.figures.style import WIDTH, save

_KINDS = {"line": lines, "heatmap": heatmaps, "scatter": scatter}

#: Figure number -> drawing function, from the spec (its kind names the module).
FIGURES: dict[int, Callable[..., Figure]] = {
    spec.number: getattr(_KINDS[spec.kind], spec.function) for spec in SPEC
}

__all__ = [
    "FIGURES",
    "IN_ZONE",
    "KL_FLOOR",
    "MAX_TICKS",
    "REL_FLOOR",
    "WIDTH",
    "accuracy_heatmap",
    "curve_with_band",
    "figure_1",
    "figure_2",
    "figure_3",
    "figure_4",
    "figure_5",
    "figure_6",
    "figure_7",
    "figure_heatmaps",
    "save",
]
