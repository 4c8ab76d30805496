"""The tables under results/ from the per-pair tables (docs/method.md section 9)."""

import sys

from goldilocks.aggregate import concat_tables
from goldilocks.io import one_line_errors, write_parquet_atomic

sm = snakemake  # noqa: F821
sys.stderr = open(sm.log[0], "w")  # noqa: SIM115
with one_line_errors():  # a stale or unreadable input: its one line, no traceback
    for name in ("curvature", "layers", "zone", "training", "kl", "small_alpha"):
        if sm.output.get(name):
            write_parquet_atomic(concat_tables(sm.input[name]), sm.output[name])
