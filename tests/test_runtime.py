"""How jobs run torch: per-thread thread counts, TF32 off, devices, logs, random streams."""

import threading

import pytest
import torch

from goldilocks.data import DatasetUnavailable
from goldilocks.runtime import configure_torch, dtype_of, generator, job_log, resolve_device


def test_every_job_thread_gets_its_rules_thread_count():
    """A worker thread that already ran torch with 2 threads keeps 2 unless told again."""
    configure_torch(1)  # the first job, in another thread
    counts = []

    def worker():
        torch.set_num_threads(2)
        torch.ones(64, 64) @ torch.ones(64, 64)
        configure_torch(1)
        counts.append(torch.get_num_threads())

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert counts == [1]
    assert not torch.backends.cuda.matmul.allow_tf32
    assert not torch.backends.cudnn.allow_tf32


def test_devices_and_dtypes():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert dtype_of("float64") is torch.float64
    with pytest.raises(KeyError):
        dtype_of("float16")


def test_random_streams_are_independent_and_reproducible():
    a = torch.rand(4, generator=generator(3, "params"))
    assert torch.equal(a, torch.rand(4, generator=generator(3, "params")))
    assert not torch.equal(a, torch.rand(4, generator=generator(3, "batch")))
    assert not torch.equal(a, torch.rand(4, generator=generator(4, "params")))


def test_job_log_writes_one_line_for_bad_input_and_a_traceback_otherwise(tmp_path):
    log = tmp_path / "job.log"
    with pytest.raises(DatasetUnavailable), job_log(log):
        raise DatasetUnavailable("fmnist: not found in data.mirrors [/x]")
    text = log.read_text()
    assert "job failed: fmnist: not found" in text and "Traceback" not in text
    with pytest.raises(ZeroDivisionError), job_log(log):
        1 / 0  # noqa: B018
    assert "Traceback" in log.read_text()
