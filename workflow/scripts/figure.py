"""Render figure ``params.number`` of one pair from its tables."""

import sys

import pandas as pd

from goldilocks import figures

sm = snakemake  # noqa: F821
sys.stderr = open(sm.log[0], "w")  # noqa: SIM115
tables = {name: pd.read_parquet(path) for name, path in sm.input.items()}
if sm.params.number == 1:
    fig = figures.figure_1(tables["curvature"])
else:
    fig = figures.figure_2(tables["training"], tables["curvature"], sm.params.threshold)
figures.save(fig, [sm.output.pdf, sm.output.png])
