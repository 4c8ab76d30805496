"""Checkpoints: saved for a key, resumed only for the same key, discarded otherwise."""

import logging

import torch

from goldilocks import checkpoint
from goldilocks.training import TrainState

SETTINGS = {
    "dtype": "float32",
    "epochs": 10,
    "log_every": 2,
    "train_subset": 64,
    "test_subset": None,
    "chunk_size": None,
    "curvature_every": 0,
    "tf32": False,
    "log_convergence": False,
    "device": "cpu",  # not part of the key's settings: the device enters as the device
}
LOG = logging.getLogger("test_checkpoint")


def _key(**changes):
    key = checkpoint.resume_key(123, 0.5, 2.0, 0.1, torch.device("cpu"), SETTINGS)
    return {**key, **changes}


def test_key_lists_what_changes_the_history():
    key = _key()
    assert key["init"] == 123 and key["alpha"] == 0.5 and key["device"] == "cpu"
    assert set(checkpoint.RESUME_SETTINGS) <= set(key)


def test_save_then_load_for_the_same_key(tmp_path):
    path = tmp_path / "c.pt"
    state = TrainState({"w": torch.arange(3.0)}, epoch=4, rows=[{"epoch": 0}, {"epoch": 2}])
    checkpoint.save(path, _key(), state, 1.5)
    loaded, seconds = checkpoint.load(path, _key(), torch.device("cpu"), LOG)
    assert loaded.epoch == 4 and loaded.rows == state.rows and seconds == 1.5
    assert torch.equal(loaded.params["w"], state.params["w"])


def test_another_key_or_an_unreadable_file_is_discarded(tmp_path, caplog):
    path = tmp_path / "c.pt"
    checkpoint.save(path, _key(), TrainState({"w": torch.zeros(1)}, 2), 0.0)
    assert checkpoint.load(path, _key(lr=0.2), torch.device("cpu"), LOG) is None
    assert not path.exists()
    path.write_bytes(b"PK\x03\x04 truncated")
    assert checkpoint.load(path, _key(), torch.device("cpu"), LOG) is None
    assert not path.exists()
    assert checkpoint.load(path, _key(), torch.device("cpu"), LOG) is None  # none there


def test_saver_saves_every_k_epochs_before_the_last(tmp_path):
    path = tmp_path / "c.pt"
    assert checkpoint.saver(None, _key(), 5, 10, lambda: 0.0, LOG) is None
    assert checkpoint.saver(path, _key(), None, 10, lambda: 0.0, LOG) is None
    save = checkpoint.saver(path, _key(), 5, 10, lambda: 7.0, LOG)
    saved_epochs = []
    for epoch in range(1, 11):
        save(TrainState({"w": torch.zeros(1)}, epoch))
        if path.exists():
            saved_epochs.append(torch.load(path, weights_only=True)["epoch"])
            path.unlink()
    assert saved_epochs == [5]  # epoch 10 is the last: the cell is about to finish


def test_a_view_into_stacked_parameters_saves_only_its_cell(tmp_path):
    """A vmap batch hands on_epoch views into its (K, ...) stacked tensors."""
    stack = torch.arange(64 * 1000, dtype=torch.float32).view(64, 1000)
    path = tmp_path / "c.pt"
    checkpoint.save(path, _key(), TrainState({"w": stack[3]}, 2), 0.0)
    loaded, _ = checkpoint.load(path, _key(), torch.device("cpu"), LOG)
    assert torch.equal(loaded.params["w"], stack[3])
    assert loaded.params["w"].untyped_storage().nbytes() == 1000 * 4  # not 64 cells
    assert path.stat().st_size < 64 * 1000 * 4 / 10
