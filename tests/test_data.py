"""Datasets through torchvision's real readers; mirrors; missing-data errors."""

import threading
from pathlib import Path

import cifar_mini
import numpy as np
import pytest
import torch

from goldilocks.data import DatasetUnavailable, load_split, prepare, synthetic

FMNIST_MIRROR = Path("/usr/share/datasets/fashion-mnist")


def test_synthetic_is_deterministic_and_balanced():
    a, b = synthetic(), synthetic()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert a["train_images"].shape == (1024, 1, 28, 28) and a["train_images"].dtype == torch.uint8
    assert torch.bincount(a["train_labels"]).tolist() == [103] * 4 + [102] * 6


def test_load_split_normalises(tmp_path):
    data = prepare("synthetic", [], tmp_path)
    x, y = load_split(data, "train", torch.float64)
    assert x.shape == (1024, 1, 28, 28) and y.dtype == torch.int64
    assert abs(x.mean().item()) < 1e-6 and abs(x.std().item() - 1) < 1e-3
    xs, _ = load_split(data, "train", indices=torch.tensor([3, 1]))
    assert torch.allclose(xs, x[[3, 1]].float(), atol=1e-6)


@pytest.mark.skipif(not FMNIST_MIRROR.is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_fmnist_from_debian_mirror(tmp_path):
    data = prepare("fmnist", [tmp_path / "empty", FMNIST_MIRROR], tmp_path / "root", download=False)
    assert data["train_images"].shape == (60000, 1, 28, 28)
    assert data["test_images"].shape == (10000, 1, 28, 28)
    assert torch.bincount(data["train_labels"]).tolist() == [6000] * 10
    assert 0.28 < data["mean"].item() < 0.29  # Fashion-MNIST's well-known pixel mean


# A gzip header followed by a corrupt deflate stream: zlib.error, which is no OSError.
CORRUPT_GZIP = bytes.fromhex("1f8b0800000000000003") + b"\xff" * 64


@pytest.mark.parametrize("content", [b"garbage, not gzip", CORRUPT_GZIP], ids=["text", "zlib"])
def test_unreadable_mirror_file_is_named_and_leaves_nothing(tmp_path, content):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):  # fmt: skip
        (mirror / f"{name}.gz").write_bytes(content)
    with pytest.raises(DatasetUnavailable) as err:
        prepare("fmnist", [mirror], tmp_path / "root", download=False)
    message = str(err.value)
    assert "\n" not in message and "cannot read mirror file" in message
    assert str(mirror / "train-images-idx3-ubyte.gz") in message  # the first one staged
    assert not list((tmp_path / "root").rglob("*.part"))


def test_unwritable_staging_is_named_as_a_write_error(tmp_path):
    """A readable mirror whose staged copy cannot be written names the staged file."""
    import gzip

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):  # fmt: skip
        (mirror / f"{name}.gz").write_bytes(gzip.compress(b"readable"))
    raw = tmp_path / "root" / "FashionMNIST" / "raw"
    (raw / "train-images-idx3-ubyte").mkdir(parents=True)  # a folder where the file goes
    with pytest.raises(DatasetUnavailable) as err:
        prepare("fmnist", [mirror], tmp_path / "root", download=False)
    message = str(err.value)
    assert "\n" not in message and "cannot read" not in message
    assert f"cannot write {raw / 'train-images-idx3-ubyte'}" in message
    assert not list(raw.rglob("*.part"))


@pytest.mark.skipif(not FMNIST_MIRROR.is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_replaced_mirror_file_is_staged_again(tmp_path):
    """A bad mirror file, once replaced, is read: the staged copy is not kept."""
    import gzip
    import shutil

    mirror = tmp_path / "mirror"
    shutil.copytree(FMNIST_MIRROR, mirror)
    good = (mirror / "t10k-labels-idx1-ubyte.gz").read_bytes()
    (mirror / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"not an IDX file"))
    with pytest.raises(DatasetUnavailable, match="torchvision could not read it"):
        prepare("fmnist", [mirror], tmp_path / "root", download=False)
    (mirror / "t10k-labels-idx1-ubyte.gz").write_bytes(good)
    data = prepare("fmnist", [mirror], tmp_path / "root", download=False)
    assert data["test_labels"].shape == (10000,)


def test_missing_dataset_names_folders_and_files(tmp_path):
    empty = tmp_path / "mirror"
    empty.mkdir()
    with pytest.raises(DatasetUnavailable) as err:
        prepare("fmnist", [empty], tmp_path / "root", download=False)
    message = str(err.value)
    assert "\n" not in message
    assert str(empty) in message and "train-images-idx3-ubyte.gz" in message


def _check_cifar(data, written):
    """Shapes, dtypes, labels, channel order and per-channel statistics."""
    n_train, n_test = len(written["train_labels"]), len(written["test_labels"])
    assert data["train_images"].shape == (n_train, 3, 32, 32)
    assert data["test_images"].shape == (n_test, 3, 32, 32)
    assert data["train_images"].dtype == torch.uint8
    # Same pixels in the same (N, C, H, W) order as written: batches 1..5 in order.
    assert torch.equal(data["train_images"], torch.from_numpy(written["train_images"]))
    assert torch.equal(data["test_images"], torch.from_numpy(written["test_images"]))
    assert data["train_labels"].tolist() == written["train_labels"]
    assert data["test_labels"].tolist() == written["test_labels"]
    scaled = written["train_images"].astype(np.float64) / 255
    assert data["mean"].tolist() == pytest.approx(scaled.mean(axis=(0, 2, 3)), rel=1e-6)
    assert data["std"].tolist() == pytest.approx(scaled.std(axis=(0, 2, 3), ddof=1), rel=1e-6)
    # The writer puts channel c near 40 + 80 c: red < green < blue.
    assert data["mean"][0] < data["mean"][1] < data["mean"][2]
    x, y = load_split(data, "train", torch.float64)
    assert x.shape == (n_train, 3, 32, 32) and y.dtype == torch.int64
    assert x.mean(dim=(0, 2, 3)).abs().max().item() < 1e-6


@pytest.mark.parametrize("form", ["archive", "folder"])
def test_cifar10_miniature_through_torchvision(tmp_path, form):
    """Both mirror forms load through torchvision's CIFAR10 code (md5 checks off)."""
    mirror = tmp_path / "mirror"
    writer = cifar_mini.write_archive if form == "archive" else cifar_mini.write_folder
    written = writer(mirror, n_per_batch=4, n_test=3)
    data = prepare(
        "cifar10",
        [tmp_path / "empty", mirror],
        tmp_path / "root",
        download=False,
        cifar_class=cifar_mini.UncheckedCIFAR10,
    )
    _check_cifar(data, written)
    assert (tmp_path / "root" / "cifar-10-batches-py" / "batches.meta").is_file()


def test_cifar10_miniature_fails_torchvisions_md5_check(tmp_path):
    """The real class rejects the miniature (md5): one line naming the mirror."""
    mirror = tmp_path / "mirror"
    cifar_mini.write_archive(mirror)
    with pytest.raises(DatasetUnavailable) as err:
        prepare("cifar10", [mirror], tmp_path / "root", download=False)
    message = str(err.value)
    assert "\n" not in message
    assert f"found in mirror {mirror} but torchvision could not read it" in message
    assert "cifar-10-python.tar.gz" in message


def test_truncated_cifar10_archive_is_one_line_naming_it(tmp_path):
    """A mirror archive cut short (an interrupted copy) or not gzip at all: one line
    naming the archive, not tarfile's traceback."""
    mirror = tmp_path / "mirror"
    cifar_mini.write_archive(mirror)
    archive = mirror / "cifar-10-python.tar.gz"
    whole = archive.read_bytes()
    for broken in (whole[: len(whole) // 2], b"not a gzip file"):
        archive.write_bytes(broken)
        with pytest.raises(DatasetUnavailable) as err:
            prepare("cifar10", [mirror], tmp_path / "root", download=False)
        message = str(err.value)
        assert "\n" not in message
        assert message.startswith(f"cifar10: cannot stage mirror {archive} into"), message


def test_missing_cifar10_names_folders_and_archive(tmp_path):
    mirrors = [tmp_path / "a", tmp_path / "b"]
    with pytest.raises(DatasetUnavailable) as err:
        prepare("cifar10", mirrors, tmp_path / "root", download=False)
    message = str(err.value)
    assert "\n" not in message
    assert f"not found in data.mirrors [{mirrors[0]}, {mirrors[1]}]" in message
    assert "data.download is false" in message
    assert "put cifar-10-python.tar.gz (or its extracted cifar-10-batches-py/)" in message


def test_training_data_subsets_are_fixed_by_the_seed():
    from goldilocks.data import training_data

    data = prepare("synthetic", [], "unused")
    (x0, y0), (tx0, _) = training_data(data, 0, 100, 50)
    (x0b, _), _ = training_data(data, 0, 100, 50)
    (x1, _), _ = training_data(data, 1, 100, 50)
    (xall, _), (txall, _) = training_data(data, 0, None, None)
    assert x0.shape == (100, 1, 28, 28) and tx0.shape[0] == 50 and len(y0) == 100
    assert torch.equal(x0, x0b) and not torch.equal(x0, x1)
    assert xall.shape[0] == 1024 and txall.shape[0] == 512


def test_data_file_bytes_do_not_depend_on_where_the_dataset_came_from(tmp_path, monkeypatch):
    """docs/method.md section 8.2: data.mirrors, root and download are execution settings.
    The data job's file from an archive mirror and from an extracted folder mirror, with
    other roots, is the same bytes (torch.save given a file name would embed the
    temporary name), so a finished run need not rerun when a mirror moves."""
    from goldilocks.jobs import prepare_dataset

    monkeypatch.setenv("GOLDILOCKS_TEST_CIFAR10_CLASS", "cifar_mini:UncheckedCIFAR10")
    cifar_mini.write_archive(tmp_path / "archive", n_per_batch=4, n_test=3)
    cifar_mini.write_folder(tmp_path / "folder", n_per_batch=4, n_test=3)
    files = []
    for name in ("archive", "folder"):  # each in its own thread: another temporary name
        files.append(tmp_path / f"out_{name}" / "cifar10.pt")
        job = threading.Thread(
            target=prepare_dataset,
            kwargs=dict(
                dataset="cifar10",
                output=str(files[-1]),
                log=str(tmp_path / f"{name}.log"),
                mirrors=[str(tmp_path / name)],
                root=str(tmp_path / f"root_{name}"),
                download=False,
            ),
        )
        job.start()
        job.join()
    assert files[0].read_bytes() == files[1].read_bytes()
    assert b"tmp" not in files[0].read_bytes()  # no temporary file name inside
