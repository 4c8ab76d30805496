"""Convergence of training cells, derived from the training table (docs/method.md 5.8).

One row per training cell from its logged epochs (``results/training.parquet``):
``initial_loss`` (epoch 0), ``final_loss`` (the last logged epoch), the *window* (the
logged epochs ``>= epochs - ceil(0.1 epochs)``, the last 10%), its ``window_spread``
(max - min of the train loss) and ``window_points``, and:

- ``progressed``: ``final_loss <= progress_frac x initial_loss`` (the loss fell well
  below its initial value);
- ``converged``: not diverged, progressed, at least 2 logged epochs in the window, and
  ``window_spread <= settle_tol x (initial_loss - final_loss)`` (the loss has stopped
  changing, relative to how far it fell).

``status``: ``diverged``; ``stalled`` (not progressed: a large-T cell flat at its initial
loss or still creeping down is never converged); ``unknown`` (a loss is not finite, or
fewer than 2 logged epochs in the window: a cell trained without
``training.log_convergence``; ``converged`` False); ``converged``; or ``progressing``
(progressed, not settled). ``reason`` says why a cell is not converged.

Derived at aggregation, so cached training cells stay valid. Torch-free: numpy, pandas.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from goldilocks.cells import TRAIN_KEYS

#: Defaults of the config's ``convergence:`` section (workflow/schemas/config.schema.yaml).
DEFAULTS = {"progress_frac": 0.5, "settle_tol": 0.05}
STATUSES = ("converged", "progressing", "stalled", "diverged", "unknown")
COLUMNS = (
    *TRAIN_KEYS,
    "epochs",
    "initial_loss",
    "final_loss",
    "window_spread",
    "window_points",
    "diverged",
    "progressed",
    "converged",
    "status",
    "reason",
)


def window_start(epochs: int) -> int:
    """First epoch of the convergence window: the last 10% of ``epochs`` (also what
    :func:`goldilocks.training.is_logged` logs densely)."""
    return int(epochs) - math.ceil(0.1 * int(epochs))


def cell_convergence(
    epochs: np.ndarray, losses: np.ndarray, diverged: bool, progress_frac, settle_tol
) -> dict:
    """The convergence columns of one cell from its logged ``epochs`` and train
    ``losses`` (any order); ``diverged`` whether the run stopped on a non-finite loss."""
    order = np.argsort(epochs, kind="stable")
    epochs, losses = np.asarray(epochs)[order], np.asarray(losses, float)[order]
    last = int(epochs[-1]) if len(epochs) else 0
    initial = float(losses[0]) if len(epochs) and epochs[0] == 0 else math.nan
    final = float(losses[-1]) if len(losses) else math.nan
    window = losses[epochs >= window_start(last)] if len(epochs) else losses
    with np.errstate(invalid="ignore"):  # a diverged cell's last loss: inf - inf
        spread = float(np.ptp(window)) if len(window) else math.nan
    out = dict(
        epochs=last,
        initial_loss=initial,
        final_loss=final,
        window_spread=spread,
        window_points=len(window),
        diverged=bool(diverged),
        progressed=False,
        converged=False,
    )
    if diverged:
        return {**out, "status": "diverged", "reason": "diverged"}
    if not (math.isfinite(initial) and math.isfinite(final) and math.isfinite(spread)):
        return {**out, "status": "unknown", "reason": "initial or final loss not finite"}
    out["progressed"] = bool(final <= progress_frac * initial)
    if not out["progressed"]:
        why = f"loss {final:.3g} above {progress_frac:g} x initial {initial:.3g}"
        return {**out, "status": "stalled", "reason": why}
    if len(window) < 2:
        why = f"{len(window)} logged epoch(s) in the last 10% (training.log_convergence off?)"
        return {**out, "status": "unknown", "reason": why}
    fall = initial - final
    if spread <= settle_tol * fall:
        return {**out, "converged": True, "status": "converged", "reason": ""}
    why = f"loss moved {spread:.3g} in the last 10%, above {settle_tol:g} x its fall {fall:.3g}"
    return {**out, "status": "progressing", "reason": why}


def convergence_table(
    training: pd.DataFrame,
    progress_frac: float = DEFAULTS["progress_frac"],
    settle_tol: float = DEFAULTS["settle_tol"],
) -> pd.DataFrame:
    """One row per training cell of ``training`` (``results/training.parquet``): its
    keys and the convergence columns (:data:`COLUMNS`), sorted by the keys.

    Raises:
        ValueError: a threshold out of range, or the table lacks a key, ``epoch`` or
            ``train_loss`` column (one line naming it).
    """
    if not 0 < progress_frac <= 1:
        raise ValueError(f"convergence.progress_frac: {progress_frac} not in (0, 1]")
    if not settle_tol >= 0:
        raise ValueError(f"convergence.settle_tol: {settle_tol} is negative")
    for column in (*TRAIN_KEYS, "epoch", "train_loss"):
        if column not in training.columns:
            raise ValueError(f"training table: no column '{column}'")
    rows = []
    for keys, cell in training.groupby(list(TRAIN_KEYS), sort=True, dropna=False):
        gone = bool(cell["diverged"].fillna(False).any()) if "diverged" in cell else False
        stats = cell_convergence(
            cell["epoch"].to_numpy(), cell["train_loss"].to_numpy(), gone, progress_frac, settle_tol
        )
        rows.append({**dict(zip(TRAIN_KEYS, keys, strict=True)), **stats})
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    return frame.astype({"window_points": int, "epochs": int}) if len(frame) else frame
