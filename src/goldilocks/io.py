"""Atomic writes: a file appears under its final name complete or not at all (torch-free)."""

from __future__ import annotations

import os
import threading
from pathlib import Path


def tmp_path(path: Path) -> Path:
    """A hidden temporary name beside ``path``, unique per process and thread."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def write_atomic(path: str | os.PathLike, write) -> None:
    """Call ``write(tmp)`` on a temporary name in the same folder, then rename to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_parquet_atomic(frame, path: str | os.PathLike) -> None:
    """``DataFrame.to_parquet`` (no index) written atomically."""
    write_atomic(path, lambda tmp: frame.to_parquet(tmp, index=False))
