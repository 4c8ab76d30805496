"""Which raw files a dataset is read from, and whether they still hold what a data file
was built from (docs/method.md section 8.2).

Where the raw files come from (``data.mirrors``, ``data.root``, ``data.download``) is an
execution setting: changing it reruns nothing. So a mirror that now holds *other content*
would go unnoticed, and the run would go on with the tensors built from the old files. The
data job therefore records, beside its tensor file, the content of the mirror files it read
(``<data file>.sources.json``: per file its key, path, size and SHA-256; the hash of a
``.gz`` is of its decompressed bytes, so a mirror that holds the same IDX file compressed
or not is the same content). At every parse the workflow compares what the configured
mirrors hold now with that record (:func:`changed`) and, where a file's content differs,
says so in one line naming the file and the command that rebuilds the data.

Torch-free: the workflow calls it at every parse.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from pathlib import Path

FMNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR_FOLDER = "cifar-10-batches-py"
#: The file beside a data file that records its sources.
SUFFIX = ".sources.json"


def find_fmnist(mirror: Path) -> dict[str, Path] | None:
    """The four IDX files in ``mirror`` (each plain or ``.gz``), or None when one lacks."""
    found = {}
    for name in FMNIST_FILES:
        for candidate in (mirror / name, mirror / f"{name}.gz"):
            if candidate.is_file():
                found[name] = candidate
                break
        else:
            return None
    return found


def find_cifar(mirror: Path) -> dict[str, Path] | None:
    """CIFAR-10 in ``mirror``: the files of its ``cifar-10-batches-py/`` folder (keyed
    ``folder/<name>``), else its archive (keyed ``archive``), else None."""
    folder = mirror / CIFAR_FOLDER
    if folder.is_dir():
        return {f"folder/{p.name}": p for p in sorted(folder.iterdir()) if p.is_file()}
    if (mirror / CIFAR_ARCHIVE).is_file():
        return {"archive": mirror / CIFAR_ARCHIVE}
    return None


def mirror_files(dataset: str, mirrors) -> dict[str, Path]:
    """The raw files ``dataset`` is read from: those of the first mirror that has it, as
    :func:`goldilocks.data.prepare` picks them; empty when no mirror has it (downloaded,
    or generated: ``synthetic``)."""
    find = {"fmnist": find_fmnist, "cifar10": find_cifar}.get(dataset)
    if find is None:
        return {}
    for mirror in map(Path, mirrors):
        if files := find(mirror):
            return files
    return {}


def content_hash(path: Path) -> str:
    """SHA-256 of the file's content (of the decompressed bytes for a ``.gz`` IDX file)."""
    digest = hashlib.sha256()
    opener = gzip.open if path.suffix == ".gz" and path.name != CIFAR_ARCHIVE else open
    with opener(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def record_path(data_file) -> Path:
    """The sources record beside ``data_file``."""
    return Path(f"{data_file}{SUFFIX}")


def record(data_file, files: dict[str, Path]) -> None:
    """Write the sources record of ``data_file`` (atomically; no record for no files)."""
    out = record_path(data_file)
    if not files:
        out.unlink(missing_ok=True)
        return
    entries = {
        key: {
            "path": str(path),
            "size": path.stat().st_size,
            "mtime": path.stat().st_mtime,
            "sha256": content_hash(path),
        }
        for key, path in files.items()
    }
    tmp = out.with_name(f".{out.name}.{os.getpid()}.part")
    tmp.write_text(json.dumps({"files": entries}, indent=1, sort_keys=True))
    tmp.replace(out)


def changed(dataset: str, mirrors, data_file) -> str | None:
    """One line when the mirrors now hold other content for ``dataset`` than
    ``data_file`` was built from, else None.

    Nothing is said when the data file or its record is missing (built before records
    were kept, or not built yet), when no mirror has the dataset, or for files the record
    does not know by key (another form: a CIFAR folder instead of its archive). A file
    whose size and modification time equal the record's is taken as unchanged without
    reading it; any other is hashed.
    """
    rec = record_path(data_file)
    if not Path(data_file).is_file() or not rec.is_file():
        return None
    try:
        then = json.loads(rec.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"{rec} is damaged; delete it (it is rewritten when {data_file} is rebuilt)"
    for key, path in mirror_files(dataset, mirrors).items():
        old = then.get(key)
        if not isinstance(old, dict):
            continue
        stat = path.stat()
        if stat.st_size == old.get("size") and stat.st_mtime == old.get("mtime"):
            continue
        now = content_hash(path)
        if now != old.get("sha256"):
            return (
                f"{path} holds other content than {data_file} was built from "
                f"({old.get('path')}, sha256 {str(old.get('sha256'))[:12]}, now {now[:12]}); "
                f"the run keeps the old tensors; to rebuild from the new files: "
                f"snakemake --forcerun data (retrains and remeasures every {dataset} cell)"
            )
    return None
