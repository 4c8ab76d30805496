"""Datasets through torchvision's real readers; mirrors; missing-data errors."""

from pathlib import Path

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


def test_missing_dataset_names_folders_and_files(tmp_path):
    empty = tmp_path / "mirror"
    empty.mkdir()
    with pytest.raises(DatasetUnavailable) as err:
        prepare("fmnist", [empty], tmp_path / "root", download=False)
    message = str(err.value)
    assert "\n" not in message
    assert str(empty) in message and "train-images-idx3-ubyte.gz" in message
