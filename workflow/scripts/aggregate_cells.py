"""Stack the cell files of one pair into its table (for curvature: layer ratios and zone)."""

import sys

from goldilocks.aggregate import concat_cells, split_layer_ratios
from goldilocks.io import write_parquet_atomic
from goldilocks.zone import goldilocks_zone

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821, SIM115
if "layers" in snakemake.output.keys():  # noqa: F821, SIM118 (Namedlist: keys, not files)
    cells, layers = split_layer_ratios(snakemake.input)  # noqa: F821
    write_parquet_atomic(layers, snakemake.output.layers)  # noqa: F821
    zone = goldilocks_zone(cells, snakemake.params.threshold)  # noqa: F821
    write_parquet_atomic(zone, snakemake.output.zone)  # noqa: F821
else:
    cells = concat_cells(snakemake.input)  # noqa: F821
write_parquet_atomic(cells, snakemake.output.table)  # noqa: F821
