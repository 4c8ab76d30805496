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


def test_a_truncated_file_names_itself_and_the_rebuild_command(tmp_path):
    """A cached file that exists but cannot be read (cut short by a full disk or a copy)
    is refused with one line naming it; a missing file stays a missing file."""
    import torch

    from goldilocks.io import load_tensors, save_tensors

    frame = pd.DataFrame({"architecture": ["lenet5"], "loss": [2.3]})
    write_cell_table(frame, tmp_path / "c.parquet", "curvature")
    save_tensors({"params": {"w": torch.ones(100)}}, tmp_path / "init.pt")
    for name in ("c.parquet", "init.pt"):
        path = tmp_path / name
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    readers = {
        "c.parquet": lambda p: read_cell_table(p, "curvature"),
        "init.pt": load_tensors,
    }
    for name, read in readers.items():
        with pytest.raises(StaleFile) as err:
            read(tmp_path / name)
        message = str(err.value)
        assert "\n" not in message and message.startswith(f"{tmp_path / name}: cannot be read")
        assert f"snakemake --forcerun {tmp_path / name}" in message
        with pytest.raises(FileNotFoundError):
            read(tmp_path / f"missing_{name}")


def test_script_jobs_end_a_user_facing_error_with_its_line(capsys):
    from goldilocks.io import one_line_errors

    with pytest.raises(SystemExit) as ended, one_line_errors():
        raise StaleFile("results/x.parquet: cannot be read (...)")
    assert ended.value.code == 1
    assert capsys.readouterr().err == "goldilocks: results/x.parquet: cannot be read (...)\n"
    with pytest.raises(KeyError), one_line_errors():  # a bug keeps its traceback
        raise KeyError("x")


def test_damaged_files_not_covered_elsewhere_are_one_line_each(tmp_path):
    """Damaged files in results/ that the truncation, checkpoint and format tests do not
    cover: an empty file (a `touch`), another kind of tensor file copied where a data or
    init file belongs, a tensor file that is no dict. Each: one line naming the file and
    the rebuild command, not a KeyError deep in a job."""
    import torch

    from goldilocks.data import load_data_file
    from goldilocks.initial import InitialState
    from goldilocks.io import save_tensors

    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "empty.parquet").write_bytes(b"")
    save_tensors({"format": 2, "params": {"w": torch.ones(2)}}, tmp_path / "init_as_data.pt")
    save_tensors({"train_images": torch.zeros(1, dtype=torch.uint8)}, tmp_path / "data_as_init.pt")
    save_tensors([torch.ones(2)], tmp_path / "list.pt")
    cases = [
        (load_data_file, "empty.pt", "cannot be read (EOFError"),
        (InitialState.load, "empty.pt", "cannot be read (EOFError"),
        (lambda p: read_cell_table(p, "training"), "empty.parquet", "cannot be read (ArrowInvalid"),
        (load_data_file, "init_as_data.pt", "not a data file (no train_images, train_labels"),
        (InitialState.load, "data_as_init.pt", "not an init file (no params, batch_x"),
        (InitialState.load, "list.pt", "not an init file (no params"),
    ]
    for read, name, reason in cases:
        with pytest.raises(StaleFile) as err:
            read(tmp_path / name)
        message = str(err.value)
        assert "\n" not in message and message.startswith(f"{tmp_path / name}: {reason}")
        assert message.endswith(
            f"`snakemake --forcerun {tmp_path / name}` and the run's "
            "--configfile, if any (or delete it)"
        )
