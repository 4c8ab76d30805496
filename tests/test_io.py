"""Atomic writes and the format versions of cached files."""

import pandas as pd
import pytest

from goldilocks.io import CELL_FORMATS, StaleFile, read_cell_table, write_atomic, write_cell_table


def test_a_failed_write_leaves_nothing_under_the_final_name(tmp_path):
    target = tmp_path / "out.txt"

    def half_written(tmp):
        tmp.write_text("partial")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        write_atomic(target, half_written)
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_cell_files_carry_their_format(tmp_path):
    frame = pd.DataFrame({"architecture": ["lenet5"], "loss": [2.3]})
    write_cell_table(frame, tmp_path / "c.parquet", "curvature")
    back = read_cell_table(tmp_path / "c.parquet", "curvature")
    pd.testing.assert_frame_equal(back, frame)
    assert back.attrs == {}
    with pytest.raises(StaleFile, match=r"c\.parquet: cell file format curvature v2.*training v1"):
        read_cell_table(tmp_path / "c.parquet", "training")


def test_an_old_curvature_file_names_itself_and_the_rebuild_command(tmp_path):
    """A curvature cell file of the layout before layer ratios were split off (no format
    recorded: version 1) is refused with one line, not read silently."""
    old = pd.DataFrame({"architecture": ["lenet5"], "layer_ratio.fc1.weight": [0.1]})
    old.to_parquet(tmp_path / "old.parquet", index=False)
    with pytest.raises(StaleFile) as err:
        read_cell_table(tmp_path / "old.parquet", "curvature")
    message = str(err.value)
    assert "\n" not in message
    assert "old.parquet: cell file format curvature v1" in message
    assert "snakemake --forcerun curvature" in message
    # Training cell files kept their layout: an unversioned one is version 1 and is read.
    assert CELL_FORMATS["training"] == 1
    old.to_parquet(tmp_path / "train.parquet", index=False)
    assert len(read_cell_table(tmp_path / "train.parquet", "training")) == 1
