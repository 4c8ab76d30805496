"""The tables of SPEC section 9 from the per-pair tables, and the Goldilocks zone."""

import sys

from goldilocks.aggregate import concat_cells
from goldilocks.io import write_parquet_atomic
from goldilocks.zone import goldilocks_zone

sm = snakemake  # noqa: F821
sys.stderr = open(sm.log[0], "w")  # noqa: SIM115
curvature = concat_cells(sm.input.curvature)
write_parquet_atomic(curvature, sm.output.curvature)
write_parquet_atomic(concat_cells(sm.input.layers), sm.output.layers)
write_parquet_atomic(goldilocks_zone(curvature, sm.params.threshold), sm.output.zone)
if sm.output.training:
    write_parquet_atomic(concat_cells(sm.input.training), sm.output.training)
