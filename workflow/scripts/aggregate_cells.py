"""Stack the cell files of one pair and scaling into its tables (curvature: with its
layer ratios and its Goldilocks zone)."""

import sys

from goldilocks.aggregate import as_scaling, cell_table
from goldilocks.io import one_line_errors, write_parquet_atomic
from goldilocks.zone import goldilocks_zone

sm = snakemake  # noqa: F821
sys.stderr = open(sm.log[0], "w")  # noqa: SIM115
with one_line_errors():  # a stale or unreadable input: its one line, no traceback
    if "layers" in sm.output.keys():  # noqa: SIM118 (Namedlist: keys, not files)
        # joint_residual's part holds the joint cells of the variants with m = k: relabelled
        scaling = sm.wildcards.scaling
        cells = as_scaling(cell_table(sm.input.rows, "curvature"), scaling)
        layers = as_scaling(cell_table(sm.input.layers, "layer_ratios"), scaling)
        write_parquet_atomic(layers, sm.output.layers)
        write_parquet_atomic(goldilocks_zone(cells, sm.params.threshold), sm.output.zone)
    else:
        cells = cell_table(sm.input, "training")
    write_parquet_atomic(cells, sm.output.table)
