"""The initial state of a seed: drawn once, saved and loaded, turned into cell problems."""

import pytest
import torch

from goldilocks.data import prepare
from goldilocks.initial import INIT_FORMAT, InitialState, draw, problem
from goldilocks.io import StaleFile, load_tensors, save_tensors
from goldilocks.scaling import scale_params


@pytest.fixture(scope="module")
def data():
    return prepare("synthetic", [], "unused")  # with the training set's mean and std


def test_draw_is_a_function_of_the_seed(data):
    a = draw("lenet300100", "synthetic", "bias", 3, data, 16, 5)
    b = draw("lenet300100", "synthetic", "bias", 3, data, 16, 5)
    c = draw("lenet300100", "synthetic", "bias", 4, data, 16, 5)
    assert a.checksum() == b.checksum() != c.checksum()
    assert torch.equal(a.batch_indices, b.batch_indices)
    assert torch.equal(a.projection.index, b.projection.index)
    assert a.batch_x.dtype == torch.float64 and a.batch_x.shape == (16, 1, 28, 28)
    assert a.projection.dim == 5 and a.projection.n_params == 266_610


def test_save_and_load_round_trip(data, tmp_path):
    state = draw("lenet300100", "synthetic", "residual", 0, data, 8, 4)
    state.save(tmp_path / "init.pt")
    back = InitialState.load(tmp_path / "init.pt")
    assert back.checksum() == state.checksum()
    assert torch.equal(back.batch_x, state.batch_x) and torch.equal(back.batch_y, state.batch_y)
    assert torch.equal(back.projection.value, state.projection.value)
    assert load_tensors(tmp_path / "init.pt")["format"] == INIT_FORMAT


def test_an_init_file_of_another_format_is_one_line(data, tmp_path):
    saved = load_tensors_of(data, tmp_path)
    save_tensors({**saved, "format": INIT_FORMAT + 1}, tmp_path / "future.pt")
    with pytest.raises(StaleFile, match=r"future.pt: init file format .*--forcerun init"):
        InitialState.load(tmp_path / "future.pt")
    # A file from before the format was recorded is format 1, and reads.
    del saved["format"]
    save_tensors(saved, tmp_path / "old.pt")
    assert (
        InitialState.load(tmp_path / "old.pt").checksum()
        == InitialState.load(tmp_path / "ref.pt").checksum()
    )


def load_tensors_of(data, tmp_path):
    draw("lenet300100", "synthetic", "homogeneous", 0, data, 8, 4).save(tmp_path / "ref.pt")
    return load_tensors(tmp_path / "ref.pt")


def test_problem_casts_then_scales(data):
    state = draw("lenet300100", "synthetic", "homogeneous", 0, data, 8, 4)
    keys = ("lenet300100", "synthetic", "homogeneous")
    p = problem(state, *keys, 3.0, 0.5, torch.device("cpu"), torch.float32)
    theta32 = {k: v.to(torch.float32) for k, v in state.params.items()}
    for name, value in scale_params(theta32, 3.0).items():
        assert torch.equal(p.params[name], value)
    assert p.x.dtype == torch.float32 and p.temperature == 0.5
    assert p.projection is state.projection
    assert p.at(theta32).params is theta32
