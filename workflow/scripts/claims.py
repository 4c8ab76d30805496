"""Evaluate the paper's claims on the run's tables (goldilocks.claims)."""

import sys

from goldilocks.claims import claims_html, evaluate_claims
from goldilocks.io import one_line_errors, read_parquet, write_atomic, write_parquet_atomic

sm = snakemake  # noqa: F821
sys.stderr = open(sm.log[0], "w")  # noqa: SIM115
with one_line_errors():  # a stale or unreadable input: its one line, no traceback
    tables = {name: read_parquet(path) for name, path in sm.input.items()}
    claims = evaluate_claims(thresholds=dict(sm.params.thresholds), **tables)
    write_parquet_atomic(claims, sm.output.table)
    write_atomic(sm.output.html, lambda tmp: tmp.write_text(claims_html(claims)))
