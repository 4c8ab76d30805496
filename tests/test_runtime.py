"""How jobs run torch: per-thread thread counts, TF32 off (and in turns), devices, logs,
random streams, values shared by concurrent jobs."""

import threading
import time

import pytest
import torch

from goldilocks.data import DatasetUnavailable
from goldilocks.runtime import (
    DeviceUnavailable,
    FailedElsewhere,
    Precision,
    configure_torch,
    dtype_of,
    generator,
    job_log,
    resolve_device,
    run_block,
    shared_value,
)


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


def test_tf32_only_while_no_strict_job_runs():
    """TF32 jobs and strict jobs take turns; the switches follow the TF32 turn, and a
    waiting kind is not starved by new jobs of the running one."""
    precision = Precision()
    events: list[tuple[str, bool, bool]] = []  # (job, tf32 job, TF32 switch inside)
    lock = threading.Lock()
    gates = {name: threading.Event() for name in ("s1", "t1", "s2", "t2")}

    def job(name: str, tf32: bool) -> None:
        with precision(tf32):
            with lock:
                events.append((name, tf32, torch.backends.cuda.matmul.allow_tf32))
            gates[name].wait(10)

    def start(name: str, tf32: bool) -> threading.Thread:
        thread = threading.Thread(target=job, args=(name, tf32))
        thread.start()
        return thread

    def until(condition) -> None:
        deadline = time.monotonic() + 10
        while not condition():
            assert time.monotonic() < deadline
            time.sleep(0.01)

    threads = [start("s1", False)]
    until(lambda: precision.running() == {"strict": 1, "tf32": 0})
    threads.append(start("t1", True))  # waits for s1
    until(lambda: precision._waiting[True] == 1)
    threads.append(start("s2", False))  # a strict job may not pass the waiting TF32 one
    until(lambda: precision._waiting[False] == 1)
    assert [e[0] for e in events] == ["s1"]
    gates["s1"].set()
    until(lambda: precision.running() == {"strict": 0, "tf32": 1})
    threads.append(start("t2", True))  # s2 waits: t2 must not enter behind t1
    until(lambda: precision._waiting[True] == 1)
    gates["t1"].set()
    until(lambda: precision.running() == {"strict": 1, "tf32": 0})
    gates["s2"].set()
    gates["t2"].set()
    for thread in threads:
        thread.join(10)
    assert events == [
        ("s1", False, False),
        ("t1", True, True),
        ("s2", False, False),
        ("t2", True, True),
    ]
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32


def test_strict_jobs_all_enter_at_once():
    precision = Precision()
    with precision(False), precision(False), precision(False):
        assert precision.running() == {"strict": 3, "tf32": 0}
    assert not torch.backends.cuda.matmul.allow_tf32


def test_shared_value_is_built_once_for_concurrent_holders_and_then_dropped():
    builds = []
    release = threading.Event()
    seen = []

    def build():
        builds.append(1)
        time.sleep(0.1)  # the others arrive while it is being built
        return object()

    def holder():
        with shared_value("key", build) as value:
            seen.append(value)
            release.wait(10)

    threads = [threading.Thread(target=holder) for _ in range(3)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while len(seen) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    for thread in threads:
        thread.join(10)
    assert len(builds) == 1 and len({id(v) for v in seen}) == 1
    with shared_value("key", build) as again:  # nobody held it: built anew
        assert again is not seen[0]
    assert len(builds) == 2


def test_shared_value_build_error_reaches_the_builder_and_is_not_kept():
    def fail():
        raise OSError("disk")

    with pytest.raises(OSError, match="disk"), shared_value("bad", fail):
        pass
    with shared_value("bad", lambda: 7) as value:
        assert value == 7


def _build_fails_with_one_waiter(key, error) -> dict:
    """What the building thread and one thread waiting for it raise when ``build()``
    raises ``error`` (by role; the build fails only once the waiter holds the key)."""
    from goldilocks import runtime

    raised = {}

    def build():
        deadline = time.monotonic() + 10
        while runtime._SHARED[key].users < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        raise error

    def holder(role, fn):
        try:
            with shared_value(key, fn):
                pass
        except BaseException as err:  # pytest.fail raises a BaseException
            raised[role] = err

    builder = threading.Thread(target=holder, args=("builder", build))
    builder.start()
    while key not in runtime._SHARED:  # the builder holds the key first
        time.sleep(0.01)
    waiter = threading.Thread(target=holder, args=("waiter", lambda: pytest.fail("built twice")))
    waiter.start()
    builder.join(10)
    waiter.join(10)
    return raised


def test_shared_value_build_error_reaches_waiting_threads_as_it_reached_the_builder():
    """A waiting job ends like the builder: bad input keeps its one line and its
    ``user_facing`` mark (else every waiting job printed a traceback), any other error
    says it happened while building."""
    for error, line in (
        (DatasetUnavailable("results/data/x.pt: cannot read"), "results/data/x.pt: cannot read"),
        (OSError("disk"), "building the shared value failed: disk"),
    ):
        raised = _build_fails_with_one_waiter(("key", line), error)
        assert raised["builder"] is error
        assert isinstance(raised["waiter"], FailedElsewhere) and str(raised["waiter"]) == line
        assert raised["waiter"].user_facing == getattr(error, "user_facing", False)


def test_run_block_cuts_only_a_user_facing_errors_traceback():
    import traceback

    def entry(*, kind):
        def deep():
            raise (DatasetUnavailable if kind == "bad input" else ValueError)(kind)

        deep()

    call = run_block(entry)
    with pytest.raises(DatasetUnavailable) as bad:
        call(kind="bad input")
    frames = [f.name for f in traceback.extract_tb(bad.value.__traceback__)]
    assert frames == ["test_run_block_cuts_only_a_user_facing_errors_traceback", "call"]
    assert bad.value.__cause__ is None and bad.value.__suppress_context__
    with pytest.raises(ValueError) as bug:
        call(kind="bug")
    assert "deep" in [f.name for f in traceback.extract_tb(bug.value.__traceback__)]
    assert call.__name__ == "entry"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_a_configured_device_this_machine_lacks_is_one_line():
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    for device in ("cuda", "cuda:1"):
        with pytest.raises(DeviceUnavailable) as err:
            resolve_device(device)
        message = str(err.value)
        assert "\n" not in message and getattr(err.value, "user_facing", False)
        assert message.startswith(f"config key device: {device!r} is not available: ")
        assert message.endswith("use device: auto or cpu")
