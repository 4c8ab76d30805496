"""A training job's preparation: the batch key, the clock of its compute seconds."""

import time

import torch
from test_jobs import TRAIN

from goldilocks import training_cell
from goldilocks.batcher import Cell
from goldilocks.training import TrainState


def test_batch_key_names_what_cells_share():
    from goldilocks.cells import TrainCell

    def key(seed=0, variant="homogeneous", **changes):
        c = TrainCell("lenet300100", "synthetic", variant, "temperature", "1", seed, "0.1")
        settings = {**TRAIN, "tf32": False, "log_convergence": False, **changes}
        return training_cell.batch_key(c, torch.device("cpu"), settings, own_data=False)

    assert key() == key(seed=0)
    assert key(seed=1) != key()  # a training subset is drawn from the seed
    full = {"train_subset": None, "test_subset": None}
    assert key(seed=1, **full) == key(**full)  # no subset: seeds share the data
    changes = ({"epochs": 16}, {"dtype": "float64"}, {"chunk_size": 32}, {"tf32": True})
    for change in (*changes, {"log_convergence": True}):
        assert key(**change) != key()
    assert key(variant="residual") != key()


def test_the_clock_counts_own_time_and_an_equal_share_of_the_batch_not_the_wait():
    clock = training_cell.Clock()
    clock.before = 2.0  # spent before a resume
    clock.cell = Cell(TrainState({"w": torch.zeros(1)}), 1.0, 0.1)
    clock.start = time.perf_counter() - 1.0  # 1 s of preparation
    clock.entered = clock.start + 1.0
    clock.cell.started, clock.cell.finished, clock.cell.batch_size = 10.0, 16.0, 3
    clock.left = time.perf_counter()
    seconds = clock()
    assert 2.0 + 1.0 + 6.0 / 3 <= seconds < 2.0 + 1.0 + 2.0 + 0.5
