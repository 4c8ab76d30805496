"""Aggregation on small cell files, without Snakemake."""

import pandas as pd
import pytest

from goldilocks.aggregate import cell_table, concat_tables
from goldilocks.cells import CurvatureCell
from goldilocks.io import StaleFile, write_cell_table, write_parquet_atomic
from goldilocks.tables import curvature_row, layer_ratio_rows

CELLS = [
    CurvatureCell("lenet300100", "fmnist", v, "alpha", s, seed)
    for v in ("layernorm", "bias")
    for s in ("1000", "0.001")
    for seed in (1, 0)
]


def _write(tmp_path):
    rows, layers = [], []
    for i, cell in enumerate(CELLS):
        row = tmp_path / f"c{i}.parquet"
        write_cell_table(
            curvature_row(cell, 10, {"loss": float(i)}, "float32", "cpu", 0.1), row, "curvature"
        )
        lay = tmp_path / f"c{i}.layers.parquet"
        write_cell_table(
            layer_ratio_rows(cell, {"fc1.weight": i, "head.weight": -i}), lay, "layer_ratios"
        )
        rows.append(str(row))
        layers.append(str(lay))
    return rows, layers


def test_cell_tables_are_sorted_and_order_free(tmp_path):
    rows, layers = _write(tmp_path)
    table = cell_table(rows, "curvature")
    pd.testing.assert_frame_equal(table, cell_table(rows[::-1], "curvature"))
    assert table[["variant", "scale", "seed"]].values.tolist()[:3] == [
        ["bias", 0.001, 0],
        ["bias", 0.001, 1],
        ["bias", 1000.0, 0],
    ]
    long = cell_table(layers, "layer_ratios")
    assert len(long) == 2 * len(CELLS)
    assert long["layer"].tolist()[:2] == ["fc1.weight", "head.weight"]


def test_a_stale_cell_file_stops_the_aggregation_with_its_name(tmp_path):
    rows, _ = _write(tmp_path)
    pd.DataFrame({"architecture": ["lenet300100"]}).to_parquet(rows[2], index=False)
    with pytest.raises(StaleFile, match=r"c2\.parquet"):
        cell_table(rows, "curvature")


def test_concat_tables_of_parts(tmp_path):
    rows, _ = _write(tmp_path)
    part_a = tmp_path / "a.parquet"
    part_b = tmp_path / "b.parquet"
    write_parquet_atomic(cell_table(rows[:4], "curvature"), part_a)
    write_parquet_atomic(cell_table(rows[4:], "curvature"), part_b)
    pd.testing.assert_frame_equal(
        concat_tables([str(part_b), str(part_a)]), cell_table(rows, "curvature")
    )
