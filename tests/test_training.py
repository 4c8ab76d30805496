"""Full-batch gradient descent: chunking (goldilocks.engines), the GD loop
(goldilocks.training), auto chunks (goldilocks.memory)."""

from __future__ import annotations

import math
import os

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY, tiny_case

from goldilocks.engines import evaluate, loss_and_grad
from goldilocks.memory import (
    BACKWARD_PEAK_FACTOR,
    MEMORY_FRACTION,
    NoRoom,
    auto_chunk_size,
    available_memory,
    saved_bytes_per_sample,
)
from goldilocks.models import build_model, forward
from goldilocks.training import TrainState, train


@pytest.mark.parametrize("architecture", list(TINY))
@pytest.mark.parametrize("chunk_size", [1, 4, 11, 12, 50])
def test_chunked_gradient_is_the_full_batch_gradient(architecture, variant, chunk_size):
    model, params, x, y = tiny_case(architecture, variant, n=12)
    ev, grads = loss_and_grad(model, params, x, y, 0.7)
    ev_c, grads_c = loss_and_grad(model, params, x, y, 0.7, chunk_size)
    assert ev_c.loss == pytest.approx(ev.loss, rel=1e-12)
    assert ev_c.accuracy == ev.accuracy
    for name, g in grads.items():
        torch.testing.assert_close(grads_c[name], g, rtol=1e-12, atol=1e-12 * g.abs().max())


def test_full_batch_gradient_is_autograd_of_the_mean_tempered_loss():
    model, params, x, y = tiny_case("lenet5", "combined", n=12)
    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    loss = F.cross_entropy(forward(model, leaves, x) / 0.3, y)
    want = torch.autograd.grad(loss, list(leaves.values()))
    ev, grads = loss_and_grad(model, params, x, y, 0.3, chunk_size=5)
    assert ev.loss == pytest.approx(loss.item(), rel=1e-12)
    for g, w in zip(grads.values(), want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-14)


def test_evaluate_chunked_matches_unchunked():
    model, params, x, y = tiny_case("resnet4", "bias", n=12)
    whole = evaluate(model, params, x, y, 2.0)
    chunked = evaluate(model, params, x, y, 2.0, chunk_size=5)
    assert chunked.loss == pytest.approx(whole.loss, rel=1e-12)
    assert chunked.accuracy == whole.accuracy


def _data(architecture="lenet300100", variant="bias"):
    model, params, x, y = tiny_case(architecture, variant, n=10)
    return model, params, (x[:7], y[:7]), (x[7:], y[7:])


def test_rows_are_plain_gradient_descent():
    """train's rows and parameters equal a hand-written GD loop, bit for bit."""
    model, params, train_data, test_data = _data()
    state = train(model, TrainState(dict(params)), train_data, test_data, 0.5, 0.2, 7, 3, 4)
    theta, rows = dict(params), []
    for epoch in range(8):
        ev, grads = loss_and_grad(model, theta, *train_data, 0.5, 4)
        if epoch in (0, 3, 6, 7):
            test = evaluate(model, theta, *test_data, 0.5, 4)
            rows.append((epoch, ev.loss, ev.accuracy, test.loss, test.accuracy))
        if epoch < 7:
            theta = {k: v - 0.2 * grads[k] for k, v in theta.items()}
    got = [
        (r["epoch"], r["train_loss"], r["train_acc"], r["test_loss"], r["test_acc"])
        for r in state.rows
    ]
    assert got == rows
    assert state.epoch == 7
    assert all(torch.equal(state.params[k], theta[k]) for k in theta)
    assert all(r["diverged"] is False and r["diverged_epoch"] is None for r in state.rows)


def test_resumed_state_logs_only_its_remaining_epochs():
    model, params, train_data, test_data = _data()
    snaps = {}

    def keep(s):
        snaps[s.epoch] = TrainState(dict(s.params), s.epoch, [dict(r) for r in s.rows])

    whole = train(
        model, TrainState(dict(params)), train_data, test_data, 1.0, 0.1, 9, 4, on_epoch=keep
    )
    resumed = train(model, snaps[5], train_data, test_data, 1.0, 0.1, 9, 4)
    assert [r["epoch"] for r in whole.rows] == [0, 4, 8, 9]
    assert resumed.rows == whole.rows
    assert all(torch.equal(resumed.params[k], v) for k, v in whole.params.items())


def test_dense_logging_adds_rows_and_changes_no_row():
    """training.log_convergence: every epoch 1..10 and of the last 10% too; the rows the
    sparse run logs are the same numbers (the train metrics are the step's own)."""
    model, params, train_data, test_data = _data()
    sparse = train(model, TrainState(dict(params)), train_data, test_data, 1.0, 0.1, 30, 8)
    dense = train(
        model, TrainState(dict(params)), train_data, test_data, 1.0, 0.1, 30, 8, dense=True
    )
    assert [r["epoch"] for r in sparse.rows] == [0, 8, 16, 24, 30]
    epochs = [r["epoch"] for r in dense.rows]
    assert epochs == [*range(0, 11), 16, 24, 27, 28, 29, 30]
    assert [r for r in dense.rows if r["epoch"] in (0, 8, 16, 24, 30)] == sparse.rows
    # the epochs only dense logging adds: train metrics, no test pass (NaN test metrics)
    added = [r for r in dense.rows if r["epoch"] not in (0, 8, 16, 24, 30)]
    assert all(math.isfinite(r["train_loss"]) for r in added)
    assert all(math.isnan(r["test_loss"]) and math.isnan(r["test_acc"]) for r in added)


def test_on_epoch_after_every_update():
    model, params, train_data, test_data = _data()
    seen = []
    train(
        model, TrainState(dict(params)), train_data, test_data, 1.0, 0.1, 5, 2,
        on_epoch=lambda s: seen.append((s.epoch, len(s.rows))),
    )  # fmt: skip
    # After update e the state is at epoch e; rows so far: those of epochs 0, 2, 4 < e.
    assert seen == [(1, 1), (2, 1), (3, 2), (4, 2), (5, 3)]


def test_probe_at_logged_multiples_and_the_last():
    model, params, train_data, test_data = _data()
    calls = []

    def probe(theta):
        calls.append(sum(v.sum().item() for v in theta.values()))
        return {"probe": float(len(calls))}

    state = train(
        model, TrainState(dict(params)), train_data, test_data, 1.0, 0.1, 14, 3,
        probe=probe, probe_every=6,
    )  # fmt: skip
    assert [r["epoch"] for r in state.rows] == [0, 3, 6, 9, 12, 14]
    assert [r.get("probe") for r in state.rows] == [1.0, None, 2.0, None, 3.0, 4.0]
    assert calls[-1] == pytest.approx(sum(v.sum().item() for v in state.params.values()))
    off = train(
        model, TrainState(dict(params)), train_data, test_data, 1.0, 0.1, 4, 2,
        probe=probe, probe_every=0,
    )  # fmt: skip
    assert not any("probe" in r for r in off.rows) and len(calls) == 4


def test_divergence_is_recorded_and_stops_the_run():
    """A non-finite loss: a last row with NaN accuracy and test metrics, every row
    flagged, no update and no on_epoch call after it."""
    model, params, train_data, test_data = _data("lenet5", "bias")
    scaled = {k: v * 1e10 for k, v in params.items()}
    epochs_seen = []
    state = train(
        model, TrainState(scaled), train_data, test_data, 1.0, 1e50, 12, 2,
        on_epoch=lambda s: epochs_seen.append(s.epoch),
    )  # fmt: skip
    last = state.rows[-1]
    at = last["epoch"]
    assert 0 < at < 12 and state.epoch == at and epochs_seen == list(range(1, at + 1))
    assert not math.isfinite(last["train_loss"])
    assert all(math.isnan(last[k]) for k in ("train_acc", "test_loss", "test_acc"))
    assert all(r["diverged"] is True and r["diverged_epoch"] == at for r in state.rows)
    assert [r["epoch"] for r in state.rows] == [*range(0, at, 2), at]
    assert all(math.isfinite(r["train_loss"]) for r in state.rows[:-1])


def test_saved_bytes_per_sample_counts_the_activations():
    """Tiny homogeneous LeNet-300-100 (widths 6, 4; 3 classes): per sample autograd keeps
    the two ReLU outputs (6 + 4), the log-softmax (3) and the int64 label."""
    model = build_model("lenet300100", "homogeneous", (1, 3, 3), 3, widths=(6, 4))
    assert saved_bytes_per_sample(model, (1, 3, 3), torch.float64) == 13 * 8 + 8
    assert saved_bytes_per_sample(model, (1, 3, 3), torch.float32) == 13 * 4 + 8


def test_available_memory_without_proc_meminfo(monkeypatch):
    """Off Linux (macOS: no /proc) the CPU's physical memory, not a FileNotFoundError."""
    import goldilocks.memory as memory

    def no_proc(*args, **kwargs):
        raise FileNotFoundError("/proc/meminfo")

    monkeypatch.setattr(memory, "open", no_proc, raising=False)
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert available_memory(torch.device("cpu")) == physical


def test_auto_chunk_size():
    model = build_model("lenet300100", "homogeneous", (1, 3, 3), 3, widths=(6, 4))
    per_sample = BACKWARD_PEAK_FACTOR * 112  # float64, see the test above
    cpu = torch.device("cpu")
    fits = math.ceil(100 * per_sample / MEMORY_FRACTION)
    assert auto_chunk_size(model, (1, 3, 3), 100, torch.float64, cpu, available=fits) is None
    chunk = auto_chunk_size(model, (1, 3, 3), 100, torch.float64, cpu, available=fits - 1)
    assert chunk == 50  # 99 fit, so two equal chunks
    chunk = auto_chunk_size(model, (1, 3, 3), 100, torch.float64, cpu, cells=3, available=fits)
    assert chunk == 25  # 33 fit for 3 cells: four chunks of 25
    assert chunk * 3 * per_sample <= MEMORY_FRACTION * fits
    with pytest.raises(NoRoom, match=r"^config key training.chunk_size: auto: one sample of 1 "):
        auto_chunk_size(model, (1, 3, 3), 100, torch.float64, cpu, available=100)
    assert NoRoom.user_facing  # a job ends with the line, not a traceback
    assert available_memory(cpu) > 0
    # The real default: the whole of a small training set fits this machine's memory.
    assert auto_chunk_size(model, (1, 3, 3), 1000, torch.float64, cpu) is None


def test_modules_import_no_private_names():
    """Engines, the epoch loop, memory sizing and the batcher are separate owners: no
    module of the package imports another's private (underscored) names."""
    import ast
    from pathlib import Path

    import goldilocks

    private = []
    for path in Path(goldilocks.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("goldilocks"):
                private += [f"{path.name}: {a.name}" for a in node.names if a.name[0] == "_"]
    assert private == []
