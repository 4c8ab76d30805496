"""The data file's source record: a mirror that now holds other content is named in one
line; the same content elsewhere, or compressed differently, is not (docs/method.md 8.2)."""

from __future__ import annotations

import gzip
import json
import os
import shutil

from goldilocks import sources


def _fmnist_mirror(folder, payload: bytes = b"idx", gz: bool = True):
    folder.mkdir(parents=True, exist_ok=True)
    for name in sources.FMNIST_FILES:
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(payload + name.encode()))
        else:
            (folder / name).write_bytes(payload + name.encode())
    return folder


def _built(tmp_path, mirror):
    data = tmp_path / "results/data/fmnist.pt"
    data.parent.mkdir(parents=True)
    data.write_bytes(b"tensors")
    sources.record(data, sources.mirror_files("fmnist", [mirror]))
    return data


def test_record_names_every_file_with_its_decompressed_hash(tmp_path):
    mirror = _fmnist_mirror(tmp_path / "m")
    data = _built(tmp_path, mirror)
    record = json.loads(sources.record_path(data).read_text())["files"]
    assert sorted(record) == sorted(sources.FMNIST_FILES)
    entry = record["train-images-idx3-ubyte"]
    assert entry["path"] == str(mirror / "train-images-idx3-ubyte.gz")
    import hashlib

    assert entry["sha256"] == hashlib.sha256(b"idxtrain-images-idx3-ubyte").hexdigest()


def test_unchanged_moved_or_recompressed_mirror_says_nothing(tmp_path):
    mirror = _fmnist_mirror(tmp_path / "m")
    data = _built(tmp_path, mirror)
    assert sources.changed("fmnist", [mirror], data) is None
    moved = tmp_path / "elsewhere"
    shutil.copytree(mirror, moved)  # same content, other path and mtimes
    for f in moved.iterdir():
        os.utime(f, (1, 1))
    assert sources.changed("fmnist", [tmp_path / "empty", moved], data) is None
    plain = _fmnist_mirror(tmp_path / "plain", gz=False)  # same IDX bytes, not gzipped
    assert sources.changed("fmnist", [plain], data) is None


def test_other_content_is_one_line_naming_the_file_and_the_rebuild(tmp_path):
    mirror = _fmnist_mirror(tmp_path / "m")
    data = _built(tmp_path, mirror)
    other = _fmnist_mirror(tmp_path / "other", payload=b"new version ")
    line = sources.changed("fmnist", [other], data)
    assert line is not None and "\n" not in line
    assert str(other / "train-images-idx3-ubyte.gz") in line
    assert "snakemake --forcerun data" in line and str(data) in line


def test_nothing_to_compare_says_nothing(tmp_path):
    mirror = _fmnist_mirror(tmp_path / "m")
    data = tmp_path / "fmnist.pt"
    assert sources.changed("fmnist", [mirror], data) is None  # not built
    data.write_bytes(b"x")
    assert sources.changed("fmnist", [mirror], data) is None  # built before records
    sources.record(data, sources.mirror_files("fmnist", [mirror]))
    assert sources.changed("fmnist", [tmp_path / "none"], data) is None  # downloaded now
    assert sources.mirror_files("synthetic", [mirror]) == {}
    sources.record(data, {})  # no files: no record
    assert not sources.record_path(data).exists()


def test_damaged_record_is_one_line_naming_it(tmp_path):
    mirror = _fmnist_mirror(tmp_path / "m")
    data = _built(tmp_path, mirror)
    sources.record_path(data).write_text("{not json")
    line = sources.changed("fmnist", [mirror], data)
    assert line is not None and "\n" not in line
    assert str(sources.record_path(data)) in line and "damaged" in line
