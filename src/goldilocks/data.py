"""Datasets as in-memory tensors: Fashion-MNIST, CIFAR-10 and a synthetic set
(docs/method.md section 8).

The data stage reads each dataset once through torchvision's real dataset classes and
saves it as one tensor file (``jobs.prepare_dataset``, ``io.save_tensors``): uint8
images ``(N, C, H, W)``, int64 labels and the per-channel mean and standard deviation of
the training images.
Later jobs load that file and normalise on the fly (:func:`load_split`): full-batch
descent keeps the data as tensors on the device, with no DataLoader.

Before any download, :func:`prepare` looks in mirror folders: for Fashion-MNIST a folder
with the four IDX files (``.gz`` or not; Debian's ``dataset-fashion-mnist`` puts them in
``/usr/share/datasets/fashion-mnist``), for CIFAR-10 a folder with
``cifar-10-python.tar.gz`` or its extracted ``cifar-10-batches-py``.
"""

from __future__ import annotations

import gzip
import importlib
import os
import shutil
import tarfile
import zlib
from pathlib import Path

import torch
from torch import Tensor

from goldilocks.sources import CIFAR_ARCHIVE, CIFAR_FOLDER, FMNIST_FILES, find_fmnist
from goldilocks.variants import DATASET_SHAPES, DATASET_SIZES, DATASETS, check_choice

SYNTHETIC_SIZES = DATASET_SIZES["synthetic"]
#: Test hook: ``module:Class`` of a ``torchvision.datasets.CIFAR10`` subclass the data
#: job reads CIFAR-10 with (the tests' miniature archives need the md5 checks off; see
#: ``tests/cifar_mini.py``). Unset in normal use: torchvision's own class runs.
TEST_CIFAR10_ENV = "GOLDILOCKS_TEST_CIFAR10_CLASS"
SYNTHETIC_SEED = 20250101


class DatasetUnavailable(RuntimeError):
    """The dataset is in no mirror folder and could not be downloaded.

    A user-facing error: its message is one line, and job logs record it without a
    traceback.
    """

    user_facing = True


def cifar_test_class():
    """The class named by :data:`TEST_CIFAR10_ENV`, or ``None`` when it is unset."""
    spec = os.environ.get(TEST_CIFAR10_ENV)
    if not spec:
        return None
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def _stage_fmnist(files: dict[str, Path], raw: Path) -> None:
    """Decompress the mirror's IDX files into torchvision's ``raw`` folder, every time
    (a copy staged earlier may come from a mirror file since replaced; the four files
    take a fraction of a second).

    Raises:
        DatasetUnavailable: naming the mirror file that could not be read (e.g. a
            ``.gz`` that is not gzip), or the staged file that could not be written;
            no partial copy is left.
    """
    for name, src in files.items():
        dst = raw / name
        tmp = dst.with_suffix(".part")
        opener = gzip.open if src.suffix == ".gz" else open
        try:  # read whole (at most 47 MB) so a read error and a write error are told apart
            with opener(src, "rb") as fin:
                content = fin.read()
        except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
            raise DatasetUnavailable(
                f"fmnist: cannot read mirror file {src} ({type(err).__name__}: {err}); "
                "replace it with the original"
            ) from err
        try:
            raw.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(content)
            tmp.replace(dst)
        except OSError as err:
            raise DatasetUnavailable(
                f"fmnist: cannot write {dst} ({type(err).__name__}: {err}); "
                f"check that {raw} is writable and its disk has room"
            ) from err
        finally:
            tmp.unlink(missing_ok=True)


def _stage_cifar(mirror: Path, root: Path) -> bool:
    """Copy the mirror's ``cifar-10-batches-py/`` (or extract its archive) into ``root``,
    every time, as Fashion-MNIST's files; ``False`` when the mirror has neither.

    Raises:
        DatasetUnavailable: naming the folder or archive that could not be copied or
            extracted (a truncated or non-gzip archive, a full disk).
    """
    if (mirror / CIFAR_FOLDER).is_dir():
        src = mirror / CIFAR_FOLDER

        def stage():
            shutil.copytree(src, root / CIFAR_FOLDER, dirs_exist_ok=True)
    elif (mirror / CIFAR_ARCHIVE).is_file():
        src = mirror / CIFAR_ARCHIVE

        def stage():
            with tarfile.open(src, "r:gz") as tar:
                tar.extractall(root, filter="data")
    else:
        return False
    try:
        stage()
    except (OSError, EOFError, zlib.error, tarfile.TarError) as err:  # shutil.Error: OSError
        raise DatasetUnavailable(
            f"cifar10: cannot stage mirror {src} into {root} ({type(err).__name__}: "
            f"{err}); replace it with the original, or check that {root} is writable "
            "and its disk has room"
        ) from err
    return True


def _torchvision_splits(dataset: str, root: Path, download: bool, cifar_class=None):
    from torchvision import datasets

    if dataset == "fmnist":
        cls = datasets.FashionMNIST
    else:
        cls = cifar_class or datasets.CIFAR10
    return [cls(str(root), train=train, download=download) for train in (True, False)]


def _as_tensors(split) -> tuple[Tensor, Tensor]:
    data = split.data
    images = torch.as_tensor(data)
    if images.ndim == 3:  # (N, H, W) grayscale
        images = images.unsqueeze(1)
    else:  # (N, H, W, C) as in CIFAR-10
        images = images.permute(0, 3, 1, 2).contiguous()
    return images.to(torch.uint8), torch.as_tensor(split.targets, dtype=torch.int64)


def synthetic() -> dict[str, Tensor]:
    """A small deterministic 10-class image set shaped like Fashion-MNIST.

    Each class is a random smooth prototype; samples are prototype plus noise, quantised
    to uint8. Learnable (accuracy well above chance within tens of GD steps) but not
    trivial; the same bytes on every machine.
    """
    (c, h, w), k = DATASET_SHAPES["synthetic"]
    g = torch.Generator().manual_seed(SYNTHETIC_SEED)
    coarse = torch.rand(k, c, 7, 7, generator=g)
    protos = torch.nn.functional.interpolate(
        coarse, size=(h, w), mode="bilinear", align_corners=False
    )
    out = {}
    for split, n in zip(("train", "test"), SYNTHETIC_SIZES, strict=True):
        labels = torch.arange(n) % k
        labels = labels[torch.randperm(n, generator=g)]
        noise = torch.randn(n, c, h, w, generator=g) * 0.35
        images = ((protos[labels] + noise).clamp(0, 1) * 255).round().to(torch.uint8)
        out[f"{split}_images"], out[f"{split}_labels"] = images, labels
    return out


def _unavailable_message(
    dataset: str, mirrors: list, staged_from: Path | None, download: bool, err: Exception
) -> str:
    """One line: which folders were searched, what went wrong, which file to put there."""
    wanted = (
        ", ".join(f"{f}.gz" for f in FMNIST_FILES)
        if dataset == "fmnist"
        else f"{CIFAR_ARCHIVE} (or its extracted {CIFAR_FOLDER}/)"
    )
    first_line = str(err).splitlines()[0] if str(err) else ""
    reason = f"{type(err).__name__}: {first_line}"
    if staged_from is not None:  # a mirror had the files, torchvision rejected them
        return (
            f"{dataset}: found in mirror {staged_from} but torchvision could not read it "
            f"({reason}); replace it with the original {wanted}"
        )
    searched = ", ".join(str(m) for m in mirrors) or "(none)"
    why = f"download failed ({reason})" if download else "data.download is false"
    return (
        f"{dataset}: not found in data.mirrors [{searched}] and {why}; "
        f"put {wanted} into one of those folders"
    )


def prepare(
    dataset: str,
    mirrors: list[str | Path],
    root: str | Path,
    download: bool = True,
    cifar_class=None,
) -> dict[str, Tensor]:
    """Load ``dataset`` through torchvision, mirrors first, then (optionally) download.

    Args:
        dataset: ``fmnist``, ``cifar10`` or ``synthetic``.
        mirrors: folders searched in order before any download.
        root: torchvision's root folder (staging and downloads go there).
        download: try torchvision's download when no mirror has the files.
        cifar_class: a ``torchvision.datasets.CIFAR10`` subclass to use instead (tests
            switch off the md5 checks for miniature archives this way).

    Returns:
        ``{train,test}_{images,labels}``, ``mean`` and ``std`` (per channel, of the
        training images scaled to [0, 1]).

    Raises:
        DatasetUnavailable: with one line naming the folders searched and the files
            expected there (or the mirror whose files torchvision rejected, e.g. a
            corrupted archive failing torchvision's md5 check).
    """
    check_choice("dataset", dataset, DATASETS)
    root = Path(root)
    if dataset == "synthetic":
        out = synthetic()
    else:
        staged_from = None
        for mirror in map(Path, mirrors):
            if dataset == "fmnist" and (files := find_fmnist(mirror)):
                _stage_fmnist(files, root / "FashionMNIST" / "raw")
                staged_from = mirror
            elif dataset == "cifar10" and _stage_cifar(mirror, root):
                staged_from = mirror
            if staged_from is not None:
                break
        try:
            splits = _torchvision_splits(
                dataset, root, download and staged_from is None, cifar_class
            )
        except Exception as err:  # torchvision raises RuntimeError or URLError
            raise DatasetUnavailable(
                _unavailable_message(dataset, mirrors, staged_from, download, err)
            ) from err
        out = {}
        for split, tv in zip(("train", "test"), splits, strict=True):
            out[f"{split}_images"], out[f"{split}_labels"] = _as_tensors(tv)
    scaled = out["train_images"].double() / 255.0
    out["mean"] = scaled.mean(dim=(0, 2, 3)).float()
    out["std"] = scaled.std(dim=(0, 2, 3)).float()
    return out


def training_data(
    prepared: dict[str, Tensor],
    seed: int,
    train_subset: int | None,
    test_subset: int | None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """A training cell's data: the training split (or its fixed subset for ``seed``) and
    the test split (or its subset), normalised, on ``device``.

    The subsets are drawn from the seed's ``subset`` and ``test`` streams
    (:func:`goldilocks.runtime.generator`), so cells of one seed share them.
    """
    from goldilocks.runtime import generator

    picks = {}
    for split, size, stream in (("train", train_subset, "subset"), ("test", test_subset, "test")):
        if size:
            n = len(prepared[f"{split}_labels"])
            picks[split] = torch.randperm(n, generator=generator(seed, stream))[:size]
    return (
        load_split(prepared, "train", dtype, device, picks.get("train")),
        load_split(prepared, "test", dtype, device, picks.get("test")),
    )


#: What the data job's tensor file holds (docs/method.md section 9.2).
DATA_ENTRIES = ("train_images", "train_labels", "test_images", "test_labels", "mean", "std")


def load_data_file(path: str | os.PathLike) -> dict[str, Tensor]:
    """The data job's tensor file; a damaged one or another kind of file there is one
    line naming it (:func:`goldilocks.io.load_tensor_file`)."""
    from goldilocks.io import load_tensor_file

    return load_tensor_file(path, DATA_ENTRIES, "a data file")


def load_split(
    prepared: dict[str, Tensor],
    split: str,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    indices: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Normalised images ``(N, C, H, W)`` and labels ``(N,)`` of one split."""
    images, labels = prepared[f"{split}_images"], prepared[f"{split}_labels"]
    if indices is not None:
        images, labels = images[indices], labels[indices]
    x = images.to(device=device, dtype=dtype) / 255.0
    mean = prepared["mean"].to(device=device, dtype=dtype).view(1, -1, 1, 1)
    std = prepared["std"].to(device=device, dtype=dtype).view(1, -1, 1, 1)
    return (x - mean) / std, labels.to(device)
