"""Shared tiny models, seeded batches and paths for the tests."""

from __future__ import annotations

import ast
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from goldilocks.models import build_model, init_params  # noqa: E402
from goldilocks.variants import VARIANTS  # noqa: E402

#: Tiny versions of every architecture: (architecture, input shape, widths).
TINY = {
    "lenet300100": ((1, 3, 3), {"widths": (6, 4)}),
    "lenet5": ((1, 16, 16), {"widths": (2, 3, 5, 4)}),
    "resnet4": ((1, 4, 4), {"width": 3}),
}


def tiny_case(architecture: str, variant: str, n: int = 12, classes: int = 3, seed: int = 0):
    """A tiny model of ``architecture``/``variant`` with float64 params and a batch."""
    shape, widths = TINY[architecture]
    model = build_model(architecture, variant, shape, classes, **widths)
    params = init_params(model, torch.Generator().manual_seed(seed))
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(n, *shape, generator=g, dtype=torch.float64)
    y = torch.randint(0, classes, (n,), generator=g)
    return model, params, x, y


def in_threads(calls: list[Callable[[], object]]) -> list:
    """Run each call in its own thread, all at once (as job threads under
    ``--force-use-threads``); their return values, or the exception each raised."""
    results: list = [None] * len(calls)

    def run(i: int) -> None:
        try:
            results[i] = calls[i]()
        except BaseException as err:  # a killed job's KeyboardInterrupt too
            results[i] = err

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.fixture(params=VARIANTS)
def variant(request) -> str:
    return request.param


def heavy_imports(*modules: str) -> list[str]:
    """Which of torch and matplotlib a fresh Python has loaded after importing ``modules``
    (the torch-free parts of the package must leave this empty)."""
    import subprocess

    code = (
        f"import sys; import {', '.join(modules)}; "
        "print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return ast.literal_eval(out)
