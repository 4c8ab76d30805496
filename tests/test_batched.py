"""Batched training (training.train_batched, goldilocks.batcher) against each cell trained
alone (training.train).

float64: every row within 1e-10 relative (accuracies equal), final parameters too
(measured here: at most 3.4e-15). ``loop`` runs the very same kernels: exact.
float32 (``vmap``): losses and parameters within :data:`F32_RTOL` = 2e-5 relative,
accuracies within one sample. The batched kernels (batched matrix products, grouped
convolutions) sum in another order than the per-cell ones, so every epoch adds
differences of the order of float32's epsilon (1.2e-7) that gradient descent carries on.
Measured on these tests' cells: at most 1.3e-6 in a loss, 6.9e-7 in a parameter, no
accuracy changed; 5e-6 after 20 epochs of the tiny ResNet-4. They are not bounded in
general: in a chaotic run (large learning rate on random labels, 30 epochs) a cell
differed by 5e-2 batched against alone, and by 2.4 (relative) alone with 1 against 2
torch threads; a tolerance is a property of the dynamics, not of the batching.
"""

from __future__ import annotations

import copy
import functools
import math

import pytest
import torch
from conftest import in_threads, tiny_case

from goldilocks.batcher import Batcher, Cell, Shared
from goldilocks.engines import batch_method
from goldilocks.io import StaleFile
from goldilocks.models import build_model, init_params
from goldilocks.training import TrainState, train, train_batched

ARCHS = ("lenet300100", "lenet5", "resnet4")
F64_RTOL = 1e-10
F32_RTOL = 2e-5
EPOCHS, LOG_EVERY, CHUNK = 12, 4, 5
#: (alpha, T, lr) of cells that train normally, and per architecture one that diverges
#: mid-run (tiny ``bias`` models, float64; checked in every test that uses it).
CELLS = [(1.0, 1.0, 0.1), (3.0, 0.5, 0.02), (0.5, 10.0, 2.0), (1.0, 0.1, 0.01)]
DIVERGING = {
    "lenet300100": (1.0, 1e-100, 1e120),
    "lenet5": (1e10, 1.0, 1e50),
    "resnet4": (1.0, 1e-5, 1e8),
}
ACCURACIES = ("train_acc", "test_acc")


def _split(x, y, dtype, n_train=7):
    return (x[:n_train].to(dtype), y[:n_train]), (x[n_train:].to(dtype), y[n_train:])


def _close(a: float, b: float, rtol: float) -> bool:
    if math.isnan(b) or math.isinf(b):
        return (math.isnan(a) and math.isnan(b)) or a == b
    return abs(a - b) <= rtol * abs(b)


def assert_same_history(got: TrainState, want: TrainState, rtol: float, acc_tol: float = 0.0):
    """Rows (epochs, divergence flags, metrics, probe values) and final state agree."""
    assert got.epoch == want.epoch
    assert [r["epoch"] for r in got.rows] == [r["epoch"] for r in want.rows]
    for a, b in zip(got.rows, want.rows, strict=True):
        assert a.keys() == b.keys()
        for key, value in b.items():
            if key in ("epoch", "diverged", "diverged_epoch"):
                assert a[key] == value, (a["epoch"], key)
            elif key in ACCURACIES and not math.isnan(value):
                assert abs(a[key] - value) <= acc_tol, (a["epoch"], key, a[key], value)
            else:
                assert _close(a[key], value, rtol), (a["epoch"], key, a[key], value)
    for name, value in want.params.items():
        scale = value.abs().max().item() if value.isfinite().all() else 0.0
        torch.testing.assert_close(
            got.params[name], value, rtol=rtol, atol=rtol * scale, equal_nan=True
        )


def _alone(model, params, train_data, test_data, temperature, lr, **kwargs):
    state = TrainState({k: v.clone() for k, v in params.items()})
    return train(model, state, train_data, test_data, temperature, lr, EPOCHS, LOG_EVERY, **kwargs)


def _mixed(arch: str, dtype: torch.dtype):
    """Tiny ``bias`` model, one seed, cells of different alpha, T and lr; one diverges."""
    model, base, x, y = tiny_case(arch, "bias", n=10)
    cells = [*CELLS[:2], DIVERGING[arch], *CELLS[2:]]
    params = [{k: (v * a).to(dtype) for k, v in base.items()} for a, _, _ in cells]
    return model, params, cells, *_split(x, y, dtype)


@pytest.mark.parametrize("method", ["vmap", "loop"])
@pytest.mark.parametrize("arch", ARCHS)
def test_mixed_cells_float64_match_alone(arch, method):
    model, params, cells, train_data, test_data = _mixed(arch, torch.float64)
    temps, lrs = [c[1] for c in cells], [c[2] for c in cells]
    alone = [
        _alone(model, p, train_data, test_data, t, lr, chunk_size=CHUNK)
        for p, t, lr in zip(params, temps, lrs, strict=True)
    ]
    diverged_at = alone[2].rows[-1]["diverged_epoch"]
    assert diverged_at is not None and 0 < diverged_at < EPOCHS  # diverges mid-run
    assert not any(s.rows[-1]["diverged"] for i, s in enumerate(alone) if i != 2)
    states = [TrainState({k: v.clone() for k, v in p.items()}) for p in params]
    got = train_batched(
        model, states, train_data, test_data, temps, lrs, EPOCHS, LOG_EVERY, CHUNK, method=method
    )
    rtol = 0.0 if method == "loop" else F64_RTOL  # loop runs the very same kernels
    for g, a in zip(got, alone, strict=True):
        assert_same_history(g, a, rtol)
    assert got[2].epoch == diverged_at and got[2].rows[-1]["epoch"] == diverged_at


@pytest.mark.parametrize("arch", ARCHS)
def test_mixed_cells_float32_within_tolerance(arch):
    model, params, cells, train_data, test_data = _mixed(arch, torch.float32)
    temps, lrs = [c[1] for c in cells], [c[2] for c in cells]
    alone = [
        _alone(model, p, train_data, test_data, t, lr)
        for p, t, lr in zip(params, temps, lrs, strict=True)
    ]
    states = [TrainState({k: v.clone() for k, v in p.items()}) for p in params]
    got = train_batched(
        model, states, train_data, test_data, temps, lrs, EPOCHS, LOG_EVERY, method="vmap"
    )
    one_sample = 1 / len(train_data[1])
    for g, a in zip(got, alone, strict=True):
        assert_same_history(g, a, F32_RTOL, acc_tol=one_sample)


@pytest.mark.parametrize("arch", ARCHS)
def test_seeds_on_shared_data_match_alone(arch):
    """Different initialisations (seeds), one data set, float64."""
    model, _, x, y = tiny_case(arch, "combined", n=10, seed=0)
    train_data, test_data = _split(x, y, torch.float64)
    params = [tiny_case(arch, "combined", seed=s)[1] for s in (0, 1, 2, 3)]
    alone = [_alone(model, p, train_data, test_data, 1.0, 0.5) for p in params]
    states = [TrainState({k: v.clone() for k, v in p.items()}) for p in params]
    got = train_batched(
        model, states, train_data, test_data, [1.0] * 4, [0.5] * 4, EPOCHS, LOG_EVERY, method="vmap"
    )
    for g, a in zip(got, alone, strict=True):
        assert_same_history(g, a, F64_RTOL)


@pytest.mark.parametrize("arch", ARCHS)
def test_cells_starting_at_different_epochs(arch):
    """Cells resumed from checkpoints at epochs 0, 5 and 9 finish as uninterrupted runs."""
    model, params, cells, train_data, test_data = _mixed(arch, torch.float64)
    keep = [0, 1, 3]
    snapshots: dict[tuple[int, int], TrainState] = {}
    alone = []
    for i in keep:
        _, t, lr = cells[i]

        def snap(state, i=i):
            snapshots[(i, state.epoch)] = copy.deepcopy(state)

        alone.append(_alone(model, params[i], train_data, test_data, t, lr, on_epoch=snap))
    states = [
        TrainState({k: v.clone() for k, v in params[0].items()}),
        copy.deepcopy(snapshots[(1, 5)]),
        copy.deepcopy(snapshots[(3, 9)]),
    ]
    calls: dict[int, list[int]] = {0: [], 1: [], 2: []}

    def on_epoch(i, state):
        calls[i].append(state.epoch)
        want = snapshots[(keep[i], state.epoch)]
        for name, value in want.params.items():
            torch.testing.assert_close(state.params[name], value, rtol=F64_RTOL, atol=1e-14)

    got = train_batched(
        model,
        states,
        train_data,
        test_data,
        [cells[i][1] for i in keep],
        [cells[i][2] for i in keep],
        EPOCHS,
        LOG_EVERY,
        on_epoch=on_epoch,
        method="vmap",
    )
    assert calls == {0: list(range(1, 13)), 1: list(range(6, 13)), 2: list(range(10, 13))}
    for g, a in zip(got, alone, strict=True):
        assert_same_history(g, a, F64_RTOL)


def test_batch_killed_and_resumed_from_checkpoints():
    """Checkpoints taken by on_epoch mid-batch (cloned) resume to the same histories
    within the float32 tolerance. Not bit for bit: a resumed batch holds other cells
    than the uninterrupted one at the same epoch, and on this CPU a cell's numbers can
    depend on its batch mates (one weight of 50 differed by 8e-8 relative: the grouped
    convolution's kernel depends on the number of groups)."""
    model, params, cells, train_data, test_data = _mixed("lenet5", torch.float32)
    temps, lrs = [c[1] for c in cells], [c[2] for c in cells]

    def fresh():
        return [TrainState({k: v.clone() for k, v in p.items()}) for p in params]

    whole = train_batched(
        model, fresh(), train_data, test_data, temps, lrs, EPOCHS, LOG_EVERY, method="vmap"
    )
    saved: dict[int, TrainState] = {}

    def checkpoint(i, state):
        if state.epoch == 7:
            saved[i] = TrainState(
                {k: v.clone() for k, v in state.params.items()},
                state.epoch,
                copy.deepcopy(state.rows),
            )

    first = train_batched(
        model, fresh(), train_data, test_data, temps, lrs, EPOCHS, LOG_EVERY,
        on_epoch=checkpoint, method="vmap",
    )  # fmt: skip
    # "Killed" at epoch 7: resume the cells that had a checkpoint, the others from scratch.
    resumed = [saved.get(i, TrainState(dict(params[i]))) for i in range(len(params))]
    again = train_batched(
        model, resumed, train_data, test_data, temps, lrs, EPOCHS, LOG_EVERY, method="vmap"
    )
    for a, b, c in zip(again, whole, first, strict=True):
        assert_same_history(c, b, 0.0)  # checkpointing changes nothing
        assert_same_history(a, b, F32_RTOL, acc_tol=1 / len(train_data[1]))
    assert sorted(saved) == [i for i, s in enumerate(whole) if not s.rows[-1]["diverged"]]


def test_probes_per_cell_at_probed_epochs():
    model, params, cells, train_data, test_data = _mixed("lenet300100", torch.float64)
    params, cells = params[:2], cells[:2]

    def norm(theta):
        return {"norm": float(sum((v**2).sum() for v in theta.values()))}

    alone = [
        _alone(model, p, train_data, test_data, t, lr, probe=norm, probe_every=8)
        for p, (_, t, lr) in zip(params, cells, strict=True)
    ]
    states = [TrainState({k: v.clone() for k, v in p.items()}) for p in params]
    got = train_batched(
        model,
        states,
        train_data,
        test_data,
        [c[1] for c in cells],
        [c[2] for c in cells],
        EPOCHS,
        LOG_EVERY,
        probes=[norm, None],
        probe_every=8,
    )
    assert [("norm" in r) for r in got[0].rows] == [True, False, True, True]  # 0, 4, 8, 12
    assert not any("norm" in r for r in got[1].rows)
    assert_same_history(got[0], alone[0], F64_RTOL)
    assert [r["norm"] for r in got[0].rows if "norm" in r] == pytest.approx(
        [r["norm"] for r in alone[0].rows if "norm" in r], rel=F64_RTOL
    )


REAL = {
    "lenet300100": (1, 28, 28),
    "lenet5": (3, 32, 32),
    "resnet4": (1, 28, 28),
}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("arch", list(REAL))
def test_real_models_small_batch(arch, dtype):
    """The paper's widths on 16 random images: 2 seeds, different T and lr, 3 epochs."""
    shape = REAL[arch]
    model = build_model(arch, "combined", shape, 10)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(24, *shape, generator=g, dtype=torch.float64).to(dtype)
    y = torch.randint(0, 10, (24,), generator=g)
    train_data, test_data = (x[:16], y[:16]), (x[16:], y[16:])
    params = [init_params(model, torch.Generator().manual_seed(s), dtype=dtype) for s in range(2)]
    temps, lrs = [0.3, 3.0], [0.01, 0.5]
    alone = [
        train(model, TrainState(dict(p)), train_data, test_data, t, lr, 3, 2, 10)
        for p, t, lr in zip(params, temps, lrs, strict=True)
    ]
    got = train_batched(
        model, [TrainState(dict(p)) for p in params], train_data, test_data, temps, lrs, 3, 2, 10,
        method="vmap",
    )  # fmt: skip
    f64 = dtype == torch.float64
    for a, b in zip(got, alone, strict=True):
        assert_same_history(a, b, F64_RTOL if f64 else F32_RTOL, 0.0 if f64 else 1 / 16)


def test_threads_run_batches_concurrently():
    """Two batches in two threads (as Snakemake job threads) give what they give alone.

    Each thread builds its own module, as every job does: ``functional_call`` swaps the
    module's parameters while it runs, so one module must not serve two threads at once.
    """
    _, params, cells, train_data, test_data = _mixed("lenet5", torch.float64)
    temps, lrs = [c[1] for c in cells], [c[2] for c in cells]

    def run():
        model = tiny_case("lenet5", "bias")[0]
        states = [TrainState({k: v.clone() for k, v in p.items()}) for p in params]
        return train_batched(
            model, states, train_data, test_data, temps, lrs, EPOCHS, LOG_EVERY, method="vmap"
        )

    want = run()
    for got in in_threads([run, run]):
        for a, b in zip(got, want, strict=True):
            assert_same_history(a, b, F64_RTOL)


def test_bad_arguments_name_the_key():
    model, params, _, train_data, test_data = _mixed("lenet300100", torch.float64)
    states = [TrainState(dict(p)) for p in params]
    with pytest.raises(ValueError, match=r"^lrs: 1 values for 5 states"):
        train_batched(model, states, train_data, test_data, [1.0] * 5, [0.1], 2, 1)
    with pytest.raises(ValueError, match=r"^method: unknown value 'fast'"):
        train_batched(
            model, states, train_data, test_data, [1.0] * 5, [0.1] * 5, 2, 1, method="fast"
        )
    other = tiny_case("lenet300100", "homogeneous")[1]
    with pytest.raises(ValueError, match=r"^states\[1\]: parameters differ"):
        train_batched(
            model, [states[0], TrainState(other)], train_data, test_data, [1.0] * 2, [0.1] * 2,
            2, 1, method="vmap",
        )  # fmt: skip
    assert train_batched(model, [], train_data, test_data, [], [], 2, 1) == []


def test_auto_method():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert batch_method("auto", cpu) == "loop"
    assert batch_method("auto", cuda) == "vmap"
    assert batch_method("vmap", cpu) == "vmap"
    assert batch_method("loop", cuda) == "loop"


def _batcher_run(batcher, jobs):
    """Run ``jobs`` (key, Cell, Shared) as concurrent threads; their states or errors."""
    return in_threads([functools.partial(batcher.train, *job) for job in jobs])


def _jobs(n_cells, key=lambda i: "pair", on_epoch=None):
    """Job threads of mixed lenet5 cells, each with its own module and data copy."""
    _, params, cells, train_data, test_data = _mixed("lenet5", torch.float64)
    jobs = []
    for i in range(n_cells):
        _, t, lr = cells[i % len(cells)]
        state = TrainState({k: v.clone() for k, v in params[i % len(cells)].items()})
        model = tiny_case("lenet5", "bias")[0]
        shared = Shared(model, train_data, test_data, EPOCHS, LOG_EVERY, "auto", method="vmap")
        cb = (lambda s, i=i: on_epoch(i, s)) if on_epoch else None
        jobs.append((key(i), Cell(state, t, lr, on_epoch=cb), shared))
    alone = [
        _alone(
            jobs[0][2].model,
            params[i % len(cells)],
            train_data,
            test_data,
            *cells[i % len(cells)][1:],
        )
        for i in range(n_cells)
    ]
    return jobs, alone


def test_batcher_meets_threads_in_one_batch():
    jobs, alone = _jobs(5)
    batcher = Batcher(max_cells=5, wait_s=60)
    got = _batcher_run(batcher, jobs)
    assert batcher.sizes == [5]
    # Each cell's compute time: an equal share of the batch's training time.
    cells = [job[1] for job in jobs]
    assert {(c.started, c.finished, c.batch_size) for c in cells} == {
        (cells[0].started, cells[0].finished, 5)
    }
    assert cells[0].seconds() == pytest.approx((cells[0].finished - cells[0].started) / 5)
    assert cells[0].seconds() > 0
    for g, a in zip(got, alone, strict=True):
        assert_same_history(g, a, F64_RTOL)


def test_batcher_fills_batches_then_waits_for_the_rest():
    jobs, alone = _jobs(5, key=lambda i: "a" if i < 3 else "b")
    batcher = Batcher(max_cells=2, wait_s=0.2)
    got = _batcher_run(batcher, jobs)
    assert sorted(batcher.sizes) == [1, 2, 2]  # key a: 2 + 1 (waited 0.2 s alone), key b: 2
    for g, a in zip(got, alone, strict=True):
        assert_same_history(g, a, F64_RTOL)


def test_batcher_of_one_cell_is_training_train():
    jobs, alone = _jobs(2)
    batcher = Batcher(max_cells=1)
    got = _batcher_run(batcher, jobs)
    assert batcher.sizes == [1, 1]
    for g, a in zip(got, alone, strict=True):
        assert_same_history(g, a, 0.0)


def test_batcher_error_fails_every_cell_of_the_batch():
    def on_epoch(i, state):
        if i == 1 and state.epoch == 3:
            raise OSError("disk full")

    jobs, _ = _jobs(3, on_epoch=on_epoch)
    got = _batcher_run(Batcher(max_cells=3, wait_s=60), jobs)
    assert all(isinstance(r, Exception) and "disk full" in str(r) for r in got)
    with pytest.raises(ValueError, match=r"^batch_cells: must be at least 1"):
        Batcher(0)


def test_batcher_bad_input_fails_every_cell_with_its_one_line():
    """A cell's bad-input error (``user_facing``: an unreadable file, ...) reaches the
    other cells' jobs as the same one line, so none of them prints a traceback."""

    def on_epoch(i, state):
        if i == 2 and state.epoch == 2:
            raise StaleFile("results/train/x.pt: unreadable; snakemake --forcerun train")

    jobs, _ = _jobs(3, on_epoch=on_epoch)
    got = _batcher_run(Batcher(max_cells=3, wait_s=60), jobs)
    assert all(isinstance(r, Exception) and r.user_facing for r in got), got
    assert {str(r) for r in got} == {"results/train/x.pt: unreadable; snakemake --forcerun train"}
