"""Evaluate the paper's claims on the run's tables (goldilocks.claims)."""

import sys

import pandas as pd

from goldilocks.claims import claims_html, evaluate_claims
from goldilocks.io import write_atomic, write_parquet_atomic

sm = snakemake  # noqa: F821
sys.stderr = open(sm.log[0], "w")  # noqa: SIM115
tables = {name: pd.read_parquet(path) for name, path in sm.input.items()}
claims = evaluate_claims(thresholds=dict(sm.params.thresholds), **tables)
write_parquet_atomic(claims, sm.output.table)
write_atomic(sm.output.html, lambda tmp: tmp.write_text(claims_html(claims)))
