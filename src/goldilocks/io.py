"""Atomic writes and versioned cell files (torch-free at import).

A file appears under its final name complete or not at all (:func:`write_atomic`). Files
that later jobs read back carry a format version: per-cell Parquet files in their
metadata (:func:`write_cell_table`, :func:`read_cell_table`), init files in a ``format``
entry (:mod:`goldilocks.initial`; data files and checkpoints carry none); a file written
before formats were recorded counts as version 1. Code
changes do not rerun cached cells (the profiles set ``rerun-triggers: [mtime, params,
input]``), so a reader refuses a file of another format with one line naming it and the
command that rebuilds it, instead of reading it silently.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

#: Per-cell Parquet formats: kind -> version. Bump a version when the columns of that
#: kind of cell file change; the rule that rebuilds it is named in the error.
CELL_FORMATS = {"curvature": 2, "layer_ratios": 1, "training": 1}
#: The rule that writes each kind of cell file (for the rebuild hint).
CELL_RULES = {"curvature": "curvature", "layer_ratios": "curvature", "training": "train"}
FORMAT_KEY = "goldilocks_format"


class StaleFile(RuntimeError):
    """A cached file of another format than this code reads (one line, user-facing)."""

    user_facing = True


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


def stale(path, what: str, found, wanted, rule: str) -> StaleFile:
    """The one-line error for a cached file of another format."""
    return StaleFile(
        f"{path}: {what} format {found}, this code reads format {wanted}; rebuild it with "
        f"`snakemake --forcerun {rule}` and the run's --configfile, if any (or delete it)"
    )


def _rebuild(path) -> str:
    """The hint that ends the one line about a damaged cached file."""
    return (
        f"rebuild it with `snakemake --forcerun {path}` and the run's --configfile, if any "
        "(or delete it)"
    )


def unreadable(path, err: Exception) -> StaleFile:
    """The one-line error for a cached file that cannot be read (e.g. truncated by a full
    disk or a copy cut short): the file exists, so Snakemake would not rebuild it alone."""
    reason = str(err).splitlines()[0] if str(err) else ""
    reason = reason if len(reason) <= 160 else f"{reason[:157]}..."
    return StaleFile(f"{path}: cannot be read ({type(err).__name__}: {reason}); {_rebuild(path)}")


@contextlib.contextmanager
def _readable(path, errors: tuple[type[Exception], ...]) -> Iterator[None]:
    """Reading ``path``: ``errors`` become :func:`unreadable`'s one line; a missing file
    stays a ``FileNotFoundError`` (an ``OSError`` too)."""
    try:
        yield
    except FileNotFoundError:
        raise
    except errors as err:
        raise unreadable(path, err) from err


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """For a ``script:`` job (its own process, stderr its log): an error marked
    ``user_facing`` (a stale or unreadable file, bad input) ends the job with its one line
    instead of a traceback."""
    try:
        yield
    except Exception as err:
        if not getattr(err, "user_facing", False):
            raise
        print(f"goldilocks: {err}", file=sys.stderr)
        sys.exit(1)


def read_parquet(path: str | os.PathLike):
    """``pandas.read_parquet``; a file that exists but cannot be read raises
    :func:`unreadable`'s one line."""
    import pandas as pd

    with _readable(path, (OSError, ValueError)):  # pyarrow's ArrowInvalid is a ValueError
        return pd.read_parquet(path)


def write_cell_table(frame, path: str | os.PathLike, kind: str) -> None:
    """Write one cell's rows of ``kind`` (see :data:`CELL_FORMATS`) with its format."""
    frame = frame.copy(deep=False)
    frame.attrs = {FORMAT_KEY: {"kind": kind, "version": CELL_FORMATS[kind]}}
    write_parquet_atomic(frame, path)


def read_cell_table(path: str | os.PathLike, kind: str):
    """Read a cell file of ``kind``; a file of another format raises :class:`StaleFile`."""
    frame = read_parquet(path)
    # Files written before formats were recorded are version 1 of their kind.
    found = frame.attrs.get(FORMAT_KEY) or {"kind": kind, "version": 1}
    if found.get("kind") != kind or found.get("version") != CELL_FORMATS[kind]:
        version = f"{found.get('kind')} v{found.get('version')}"
        raise stale(path, "cell file", version, f"{kind} v{CELL_FORMATS[kind]}", CELL_RULES[kind])
    frame.attrs = {}
    return frame


def save_tensors(obj, path: str | os.PathLike) -> None:
    """``torch.save`` written atomically; the bytes depend on ``obj`` alone (given a file
    name, ``torch.save`` names the archive's inner folder after it, here the temporary
    name: the same tensors saved twice would differ)."""
    import torch

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)

    write_atomic(path, write)


def load_tensor_file(path: str | os.PathLike, entries, what: str) -> dict:
    """:func:`load_tensors` of a file that must be a dict holding ``entries`` (``what``,
    e.g. "data file"); a readable file without them (another kind of file copied there)
    raises one line naming it, instead of a KeyError deep in a job."""
    saved = load_tensors(path)
    missing = [e for e in entries if not isinstance(saved, dict) or e not in saved]
    if missing:
        raise StaleFile(f"{path}: not {what} (no {', '.join(missing)}); {_rebuild(path)}")
    return saved


def load_tensors(path: str | os.PathLike):
    """Load a tensor file written by this package (tensors and plain containers only);
    one that exists but cannot be read raises :func:`unreadable`'s one line."""
    import pickle

    import torch

    with _readable(path, (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError)):
        return torch.load(path, map_location="cpu", weights_only=True)
