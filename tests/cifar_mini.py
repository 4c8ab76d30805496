"""Miniature CIFAR-10 archives in the real upstream format, and the test-only reader.

No machine here can download CIFAR-10 (docs/method.md section 8). :func:`write_archive` writes the
upstream layout with a handful of images: dicts pickled the way Python 2 pickled them
(``{b"batch_label", b"labels", b"data", b"filenames"}``) with ``data`` uint8
``(N, 3072)`` (1024 red, then 1024 green, then 1024 blue values, each row-major 32x32)
in ``data_batch_1..5`` and ``test_batch``,
and ``batches.meta`` with ``label_names``, packed as ``cifar-10-python.tar.gz`` whose
top folder is ``cifar-10-batches-py``. :class:`UncheckedCIFAR10` is torchvision's
``CIFAR10`` with the md5 sums set to ``None`` (torchvision then only checks that each
file exists); every other line that runs is torchvision's.

The workflow's data job picks the reader up from the environment variable
``GOLDILOCKS_TEST_CIFAR10_CLASS=cifar_mini:UncheckedCIFAR10`` (with this folder on
``PYTHONPATH``), so the real Snakemake CLI can load a miniature archive too.
"""

from __future__ import annotations

import io
import pickle
import struct
import tarfile
from pathlib import Path
from typing import ClassVar

import numpy as np
from torchvision.datasets import CIFAR10

LABEL_NAMES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]


class _Py2Str(bytes):
    """A Python 2 ``str``: pickled as (SHORT_)BINSTRING, as the upstream files are."""


class _Py2Pickler(pickle._Pickler):
    """Pickle protocol 2 that writes :class:`_Py2Str` like Python 2 wrote ``str``.

    Upstream CIFAR-10 was pickled by Python 2, so its keys are byte strings that Python 3
    decodes as the reader asks: ``b"data"`` with ``encoding="bytes"`` (the dataset page's
    recipe), ``"data"`` with ``encoding="latin1"`` (torchvision).
    """

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2str(self, obj: _Py2Str) -> None:
        raw = bytes(obj)
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[_Py2Str] = save_py2str


def _py2_pickle(obj) -> bytes:
    buffer = io.BytesIO()
    _Py2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


class UncheckedCIFAR10(CIFAR10):
    """torchvision's ``CIFAR10`` without md5 checks (miniature archives only)."""

    train_list: ClassVar = [[name, None] for name, _ in CIFAR10.train_list]
    test_list: ClassVar = [[name, None] for name, _ in CIFAR10.test_list]
    meta: ClassVar = {**CIFAR10.meta, "md5": None}


def _batch(rng: np.random.Generator, n: int, label: str) -> tuple[dict, np.ndarray, list]:
    """One pickled-batch dict: images whose red/green/blue planes differ on purpose."""
    images = np.empty((n, 3, 32, 32), dtype=np.uint8)
    # Channel c has values near 40 + 80 c, so a wrong channel order is visible.
    for c in range(3):
        images[:, c] = rng.integers(80 * c, 80 * c + 80, size=(n, 32, 32))
    labels = [int(v) for v in rng.integers(0, 10, size=n)]
    entry = {
        _Py2Str(b"batch_label"): _Py2Str(label.encode()),
        _Py2Str(b"labels"): labels,
        _Py2Str(b"data"): images.reshape(n, 3072),
        _Py2Str(b"filenames"): [_Py2Str(f"img_{label}_{i}.png".encode()) for i in range(n)],
    }
    return entry, images, labels


def write_folder(folder: Path, n_per_batch: int = 6, n_test: int = 5, seed: int = 0) -> dict:
    """Write an extracted ``cifar-10-batches-py`` into ``folder``.

    Returns:
        The images and labels written: ``train_images`` ``(5 n_per_batch, 3, 32, 32)``
        uint8, ``train_labels``, ``test_images``, ``test_labels``.
    """
    rng = np.random.default_rng(seed)
    base = Path(folder) / "cifar-10-batches-py"
    base.mkdir(parents=True, exist_ok=True)
    written = {"train_images": [], "train_labels": []}
    for name in TRAIN_BATCHES:
        entry, images, labels = _batch(rng, n_per_batch, name)
        (base / name).write_bytes(_py2_pickle(entry))
        written["train_images"].append(images)
        written["train_labels"] += labels
    entry, images, labels = _batch(rng, n_test, "testing batch 1 of 1")
    (base / "test_batch").write_bytes(_py2_pickle(entry))
    meta = {
        _Py2Str(b"num_cases_per_batch"): n_per_batch,
        _Py2Str(b"label_names"): [_Py2Str(n.encode()) for n in LABEL_NAMES],
        _Py2Str(b"num_vis"): 3072,
    }
    (base / "batches.meta").write_bytes(_py2_pickle(meta))
    written["train_images"] = np.concatenate(written["train_images"])
    written["test_images"], written["test_labels"] = images, labels
    return written


def write_archive(folder: Path, n_per_batch: int = 6, n_test: int = 5, seed: int = 0) -> dict:
    """Write ``cifar-10-python.tar.gz`` (top folder ``cifar-10-batches-py``) into ``folder``.

    Returns:
        What :func:`write_folder` returns.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    staging = folder / ".staging"
    written = write_folder(staging, n_per_batch, n_test, seed)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(staging / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    (folder / "cifar-10-python.tar.gz").write_bytes(buffer.getvalue())
    for path in sorted((staging / "cifar-10-batches-py").iterdir()):
        path.unlink()
    (staging / "cifar-10-batches-py").rmdir()
    staging.rmdir()
    return written
