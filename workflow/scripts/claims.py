"""Evaluate the paper's claims on the run's tables (goldilocks.claims): the table, the
report's page and the claims figure."""

import sys

import matplotlib

matplotlib.use("Agg")  # chosen by the job: files only

from goldilocks.claims import evaluate_claims
from goldilocks.claims_report import claims_figure, claims_html
from goldilocks.io import (
    one_line_errors,
    read_parquet,
    write_atomic,
    write_parquet_atomic,
)

sm = snakemake  # noqa: F821
sys.stderr = open(sm.log[0], "w")  # noqa: SIM115
with one_line_errors():  # a stale or unreadable input: its one line, no traceback
    tables = {name: read_parquet(path) for name, path in sm.input.items()}
    claims = evaluate_claims(thresholds=dict(sm.params.thresholds), **tables)
    write_parquet_atomic(claims, sm.output.table)
    write_atomic(sm.output.html, lambda tmp: tmp.write_text(claims_html(claims)))
    figure = claims_figure(claims)
    write_atomic(sm.output.figure, lambda tmp: figure.savefig(tmp, format="png", dpi=110))
