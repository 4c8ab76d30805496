"""The tables under results/ from the per-pair tables (docs/method.md section 9); the
convergence table is derived from the training table here, so cached training cells stay
valid (section 5.8), and so are the zone table's counts of trained scales inside each zone
(section 6.1)."""

import sys

from goldilocks.aggregate import concat_tables
from goldilocks.convergence import convergence_table
from goldilocks.io import one_line_errors, write_parquet_atomic
from goldilocks.zone import with_trained

sm = snakemake  # noqa: F821
sys.stderr = open(sm.log[0], "w")  # noqa: SIM115
with one_line_errors():  # a stale or unreadable input: its one line, no traceback
    training = concat_tables(sm.input.training) if sm.output.get("training") else None
    for name in ("curvature", "layers", "zone", "training", "kl", "small_alpha"):
        if sm.output.get(name):
            table = training if name == "training" else concat_tables(sm.input[name])
            if name == "zone":  # how many trained scales each zone holds
                table = with_trained(table, training)
            write_parquet_atomic(table, sm.output[name])
            if name == "training" and sm.output.get("convergence"):
                frame = convergence_table(table, **sm.params.convergence)
                write_parquet_atomic(frame, sm.output.convergence)
