"""Render figure ``params.number`` of one pair from its tables (inputs named by table)."""

import sys

import matplotlib

matplotlib.use("Agg")  # files only: the package leaves the backend to its caller

from goldilocks import figures
from goldilocks.aggregate import concat_tables
from goldilocks.io import one_line_errors
from goldilocks.registered import register_models

sm = snakemake  # noqa: F821
sys.stderr = open(sm.log[0], "w")  # noqa: SIM115
with one_line_errors():  # a stale or unreadable input: its one line, no traceback
    register_models(sm.config)  # users' models: their variants' order in the registry
    # Each input name lists the table's parts (one per scaling); no part: no table (no zone).
    tables = {
        name: concat_tables([paths] if isinstance(paths, str) else list(paths)) if paths else None
        for name, paths in sm.input.items()
    }
    fig = figures.FIGURES[sm.params.number](**tables)
    figures.save(fig, [sm.output.pdf, sm.output.png])
