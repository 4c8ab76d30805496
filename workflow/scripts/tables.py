"""The tables of SPEC section 9 from the per-pair tables (zones included)."""

import sys

from goldilocks.aggregate import concat_cells
from goldilocks.io import write_parquet_atomic

sm = snakemake  # noqa: F821
sys.stderr = open(sm.log[0], "w")  # noqa: SIM115
for name in ("curvature", "layers", "zone", "training", "kl"):
    if sm.output.get(name):
        write_parquet_atomic(concat_cells(sm.input[name]), sm.output[name])
