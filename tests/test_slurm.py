"""The tiny synthetic grid on a real SLURM cluster: ``profiles/slurm`` (a job per cell,
curvature cells grouped) and ``workflow/slurm_batched.py`` (a slice of cells per
allocation, as threads of one Snakemake).

Needs the local single-node cluster of ``tests/slurm/`` (Debian's slurmctld + slurmd +
munge, on 127.0.0.1); skipped with the reason when ``sbatch`` is missing or no cluster
answers, so the README's plain ``pytest -q`` stays fast. Run them with::

    sudo tests/slurm/install.sh && sudo tests/slurm/cluster.sh start
    .venv/bin/python -m pytest -q -m slurm tests/test_slurm.py
    sudo tests/slurm/cluster.sh stop

Submit host and node are the same machine here, so any scratch path is shared.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from goldilocks import slurm_plan

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
TARGETS = ("results/curvature.parquet", "results/training.parquet")
# Allowed differences between one process per job (SLURM) and jobs as concurrent threads
# of one process (the local default), both with one torch thread: (rtol, atol as a
# fraction of the column's largest magnitude). Measured on the tiny grid in three runs:
# float32 training losses of the two high-loss cells (T=1e-3, 1e-4) differed by up to
# 4.3e-5 relative in two runs, not at all in one with MKL_CBWR=AUTO,STRICT; float64
# curvature was identical in two runs and within 9e-13 relative (plus ~5e-17 noise on a
# zero eigenvalue) in one.
# The cause: MKL rounds differently with operand alignment unless MKL_CBWR=AUTO,STRICT,
# and concurrent threads allocate differently (docs/performance.md, "On a cluster").
TOLERANCE = {"curvature": (1e-9, 1e-9), "training": (1e-4, 1e-6)}
KEYS = ("architecture", "dataset", "variant", "scaling", "scale", "seed")
PROFILE = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
# The tiny grid has 21 curvature cells: groups of 11 (instead of the profile's 20) run
# as two group jobs side by side on the two-CPU test node, halving the wall time.
GROUP_SIZE = 11
BATCHED = ROOT / "workflow/slurm_batched.py"
# A curvature cell's row file (its layer ratios end in .layers.parquet).
ROW = re.compile(r"_seed\d+\.parquet$")
# One training cell: T = 10^-1 x depth 3 (times_depth) = 0.001 for LeNet-300-100.
TRAIN_CELL = "results/train/lenet300100_synthetic/homogeneous/temperature/scale0.001_lr0.1_seed0"
# Far more epochs than a one-minute time limit allows.
ENDLESS = {"training.epochs": 100000, "training.log_every": 1000, "training.curvature_every": 0}


def _cluster_state() -> str | None:
    """Why the SLURM tests cannot run here, or None when a node is ready."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return "sbatch/sinfo not installed (sudo tests/slurm/install.sh)"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=5)
    except subprocess.TimeoutExpired:
        return "sinfo timed out: no slurmctld answers (sudo tests/slurm/cluster.sh start)"
    states = out.stdout.split()
    if out.returncode != 0 or not any(s.rstrip("*") in ("idle", "mix", "alloc") for s in states):
        msg = (out.stderr.strip().splitlines() or states or ["no answer"])[-1]
        return f"no SLURM node ready ({msg}); start one: sudo tests/slurm/cluster.sh start"
    return None


_REASON = _cluster_state()
pytestmark = [pytest.mark.slurm, pytest.mark.skipif(_REASON is not None, reason=_REASON or "")]


def snakemake(workdir: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """The real CLI in ``workdir``; output captured, never raises on a non-zero exit."""
    cmd = [SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir)]
    return subprocess.run(
        [*cmd, *args], cwd=workdir, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def scratch_root():
    """This module's own scratch folder (seen by submit host and node: same machine).

    Not pytest's tmp_path: its base folder is shared by every pytest run of the user and
    pruned to the newest three, which removed a cluster run's folder mid-run here.
    """
    root = Path(tempfile.mkdtemp(prefix="goldilocks-slurm-test-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def scratch(root: Path, name: str, **overrides) -> Path:
    """A scratch folder holding configs/tiny.yaml (with overrides) as its config.yaml.

    Overrides by dotted key: ``{"training.epochs": 10, "curvature.scales.alpha.num": 5}``.
    """
    workdir = root / name
    workdir.mkdir()
    config = yaml.safe_load((ROOT / "configs/tiny.yaml").read_text())
    for key, value in overrides.items():
        *path, leaf = key.split(".")
        node = config
        for part in path:
            node = node[part]
        node[leaf] = value
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return workdir


def submit(workdir: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """Snakemake through profiles/slurm, printing the sbatch lines, keeping SLURM logs."""
    profile = str(ROOT / "profiles/slurm")
    # The plugin deletes the SLURM logs of successful jobs unless told to keep them.
    extra = ("--slurm-keep-successful-logs", "--verbose")
    # Flags last: they end any multi-value option in args (--set-resources a=1 target).
    return snakemake(workdir, "--workflow-profile", profile, *args, *extra, timeout=timeout)


def submit_command(workdir: Path, *args: str) -> list[str]:
    """The command line of :func:`submit`, for runs that the test interrupts."""
    cmd = [SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir)]
    profile = str(ROOT / "profiles/slurm")
    return [*cmd, "--workflow-profile", profile, *args, "--slurm-keep-successful-logs"]


def drive(workdir: Path, *args: str, settings: Path, timeout: float = 900, env=None):
    """workflow/slurm_batched.py in ``workdir`` with ``settings``; never raises on exit 1."""
    cmd = [sys.executable, str(BATCHED), "--directory", str(workdir), "--settings", str(settings)]
    return subprocess.run(
        [*cmd, *args], cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env
    )


def batched_settings(workdir: Path, startup_minutes: float | None = None, **cells) -> Path:
    """profiles/slurm-batched/sbatch.yaml for the 2-CPU test node, written to ``workdir``.

    One CPU per allocation (two run side by side), squeue polled every second; ``cells``
    updates per cell rule, e.g. ``curvature={"cells_per_slice": 9}``.
    """
    settings = yaml.safe_load((ROOT / "profiles/slurm-batched/sbatch.yaml").read_text())
    settings["poll_seconds"] = 1
    if startup_minutes is not None:
        settings["startup_minutes"] = startup_minutes
    for stage in ("before", "after"):
        settings[stage]["cpus"] = 1
    for rule, spec in settings["cells"].items():
        spec["cpus"] = 1
        spec.update(cells.get(rule, {}))
    path = workdir / "sbatch.yaml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


def allocations(output: str) -> dict[str, str]:
    """Allocation name -> SLURM job id, as a driver run printed them."""
    return dict(re.findall(r"^slurm_batched: (\S+): SLURM job (\d+),", output, flags=re.M))


def allocation_log(workdir: Path, name: str, job_id: str) -> str:
    """The SLURM log of one allocation of a driver run."""
    (log,) = (workdir / ".snakemake/slurm_batched").glob(f"*/{name}-{job_id}.log")
    return log.read_text()


def finished(log: str, rule: str) -> int:
    """Jobs of ``rule`` that a Snakemake log reports finished."""
    return len(re.findall(rf"^Finished jobid: \d+ \(Rule: {rule}\)$", log, flags=re.M))


def cell_rows(workdir: Path) -> list[Path]:
    """The curvature cells' row files present (a cell writes its layer ratios first)."""
    folder = workdir / "results/curvature"
    return [p for p in folder.rglob("*.parquet") if ROW.search(p.name)] if folder.exists() else []


def stamps(paths) -> dict[Path, tuple[int, int]]:
    """(mtime_ns, inode) per file: a file rewritten by an atomic rename changes both."""
    return {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in paths}


def squeue_comments() -> dict[str, str]:
    """Job id -> sbatch --comment of the queued and running jobs."""
    out = subprocess.run(["squeue", "-h", "-o", "%i %k"], capture_output=True, text=True).stdout
    return dict(line.split(maxsplit=1) for line in out.splitlines() if len(line.split()) == 2)


def wait_for_rows(workdir: Path, n: int, process: subprocess.Popen, seconds: float = 400) -> int:
    """Wait until at least ``n`` curvature rows exist (or the run ended); how many exist."""
    deadline = time.monotonic() + seconds
    while len(cell_rows(workdir)) < n and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    return len(cell_rows(workdir))


def sbatch_lines(log: str) -> list[str]:
    """The ``sbatch`` command lines the plugin logged under ``--verbose``."""
    return re.findall(r"^sbatch call: (sbatch .*)$", log, flags=re.MULTILINE)


@pytest.fixture(scope="module")
def slurm_run(scratch_root):
    """The tiny grid on the cluster through the workflow profile; (workdir, result, seconds)."""
    workdir = scratch(scratch_root, "slurm")
    t0 = time.monotonic()
    result = submit(workdir, *TARGETS, "--group-components", f"curvature={GROUP_SIZE}")
    seconds = time.monotonic() - t0
    (workdir / "snakemake.log").write_text(result.stdout + result.stderr)
    print(f"\nslurm run: {seconds:.0f} s wall, log {workdir / 'snakemake.log'}")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return workdir, result, seconds


@pytest.fixture(scope="module")
def local_run(scratch_root):
    """The same grid with the local default profile (threads, torch threads 1)."""
    workdir = scratch(scratch_root, "local")
    result = snakemake(workdir, "--cores", "2", *TARGETS)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return workdir


def assert_same_tables(workdir: Path, reference: Path) -> None:
    """The aggregated tables of two runs agree: keys exactly, floats within TOLERANCE."""
    for target in TARGETS:
        on_slurm = pd.read_parquet(workdir / target)
        local = pd.read_parquet(reference / target)
        assert list(on_slurm.columns) == list(local.columns)
        assert len(on_slurm) == len(local) > 0
        # Cell runtimes differ between runs; every metric and key column must not.
        columns = [c for c in local.columns if c != "compute_seconds"]
        keys = [c for c in (*KEYS, "lr_base", "epoch") if c in columns]
        on_slurm = on_slurm[columns].sort_values(keys).reset_index(drop=True)
        local = local[columns].sort_values(keys).reset_index(drop=True)
        floats = [c for c in columns if local[c].dtype.kind == "f"]
        others = [c for c in columns if c not in floats]
        pd.testing.assert_frame_equal(on_slurm[others], local[others], check_exact=True)
        rtol, atol = TOLERANCE[Path(target).stem]
        for column in floats:
            x, y = on_slurm[column].to_numpy(), local[column].to_numpy()
            scale = np.nanmax(np.abs(y), initial=0.0)
            assert np.allclose(x, y, rtol=rtol, atol=atol * scale, equal_nan=True), column
            differ = int(np.sum((x != y) & ~(np.isnan(x) & np.isnan(y))))
            if differ:
                print(f"{target} {column}: {differ} of {len(x)} values differ (within tolerance)")


def test_grid_on_slurm_matches_local_run(slurm_run, local_run):
    workdir, _, _ = slurm_run
    assert_same_tables(workdir, local_run)


def test_each_curvature_group_is_one_slurm_job(slurm_run):
    workdir, result, _ = slurm_run
    log = result.stdout + result.stderr
    lines = sbatch_lines(log)
    # A cell writes two files (its row and its layer ratios): count the rows.
    cells = len(cell_rows(workdir))
    group_size = GROUP_SIZE
    # Each sbatch logs to .snakemake/slurm_logs/<rule_NAME or group_NAME>/...
    kinds = Counter(re.search(r"/slurm_logs/([a-z_]+)/", line)[1] for line in lines)
    groups = [line for line in lines if "/slurm_logs/group_curvature" in line]
    # No curvature cell was submitted on its own; ceil(cells / group_size) group jobs ...
    assert cells > 1
    assert "rule_curvature" not in kinds
    assert len(groups) == -(-cells // group_size)
    # ... each asking for one CPU and its cells' summed runtime (they run one by one) ...
    per_cell = PROFILE["set-resources"]["curvature"]["runtime"]
    assert all("--cpus-per-task=1 " in line for line in groups)
    assert sum(int(re.search(r" -t (\d+) ", line)[1]) for line in groups) == per_cell * cells
    # ... and each ONE SLURM job: one SLURM log per group, all its cells done in it.
    group_logs = sorted((workdir / ".snakemake/slurm_logs").glob("group_curvature*/**/*.log"))
    assert len(group_logs) == len(groups)
    done = {
        m for p in group_logs for m in re.findall(r"curvature/\S+_seed\d+\.parquet", p.read_text())
    }
    assert len(done) == cells
    # Every other job is one sbatch of its own.
    variants = len(yaml.safe_load((workdir / "config.yaml").read_text())["variants"])
    assert kinds["rule_data"] == 1
    assert kinds["rule_init"] == variants
    assert kinds["rule_train"] == len(list((workdir / "results/train").rglob("*.parquet")))
    print("\nsbatch lines:\n" + "\n".join(line.split(" --wrap=")[0] for line in lines))


def test_job_killed_by_time_limit_fails_the_run(scratch_root):
    """A training cell over its SLURM time limit: the run exits non-zero, in bounded time."""
    workdir = scratch(scratch_root, "timeout", **ENDLESS)
    t0 = time.monotonic()
    args = (f"{TRAIN_CELL}.parquet", "--set-resources", "train:runtime=1")
    result = submit(workdir, *args, timeout=600)
    seconds = time.monotonic() - t0
    log = result.stdout + result.stderr
    print(f"\ntimeout run: exit {result.returncode} after {seconds:.0f} s")
    assert result.returncode != 0
    assert "SLURM status is: 'TIMEOUT'" in log, log[-4000:]
    assert seconds < 400


def test_cancelled_curvature_group_keeps_finished_cells(scratch_root):
    """scancel a curvature group in the middle: its finished cells stay (keep-incomplete),
    and the rerun submits only the others."""
    workdir = scratch(scratch_root, "group-cancel", **{"training.enabled": False})
    dry = snakemake(workdir, "--dry-run", "results/curvature.parquet")
    jobs = slurm_plan.due_jobs(dry.stdout)
    # Data and init files locally (seconds): the SLURM part is one group of four cells.
    upstream = [f for rule in ("data", "init") for job in jobs[rule] for f in job]
    assert snakemake(workdir, "--cores", "2", *upstream).returncode == 0
    targets = [job[0] for job in jobs["curvature"][:4]]
    group = ("--group-components", f"curvature={len(targets)}")
    with open(workdir / "first.log", "w") as log:
        run = subprocess.Popen(
            submit_command(workdir, *targets, *group), cwd=workdir, stdout=log, stderr=log
        )
        # Each cell starts its own Snakemake on the node (10-20 s): cancel after two.
        done = wait_for_rows(workdir, 2, run)
        ids = [i for i, c in squeue_comments().items() if c.startswith("rule_curvature")]
        subprocess.run(["scancel", *ids], check=True)
        run.wait(timeout=300)
    first = (workdir / "first.log").read_text()
    assert run.returncode != 0
    assert ids, "the group had ended before it could be cancelled"
    kept = [t for t in targets if (workdir / t).exists()]
    print(f"\ngroup cancelled with {done} of {len(targets)} cells done; {len(kept)} kept")
    assert 2 <= len(kept) < len(targets), first[-3000:]
    assert "Removing output files of failed job" not in first
    files = [workdir / t for t in kept] + [
        workdir / t.replace(".parquet", ".layers.parquet") for t in kept
    ]
    before = stamps(files)
    resume = submit(workdir, *targets, *group)
    assert resume.returncode == 0, (resume.stdout + resume.stderr)[-4000:]
    assert stamps(files) == before
    log = resume.stdout + resume.stderr
    rerun = re.findall(r"^\s+rule curvature:$", log, flags=re.M)
    assert len(rerun) == len(targets) - len(kept), log[-4000:]


# --- workflow/slurm_batched.py: a slice of cells per allocation, threads of one process


@pytest.fixture(scope="module")
def batched_run(scratch_root):
    """The tiny grid through the driver: curvature slices of GROUP_SIZE; (workdir, result).

    With PYTHONPROFILEIMPORTTIME every Python process of an allocation writes its imports
    to the allocation's log, so the log shows how often torch was imported.
    """
    workdir = scratch(scratch_root, "batched")
    settings = batched_settings(workdir, curvature={"cells_per_slice": GROUP_SIZE})
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    t0 = time.monotonic()
    result = drive(workdir, *TARGETS, settings=settings, env=env)
    print(f"\nbatched run: {time.monotonic() - t0:.0f} s wall\n{result.stdout}")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return workdir, result


def test_batched_grid_matches_local_run(batched_run, local_run):
    workdir, _ = batched_run
    assert_same_tables(workdir, local_run)


def test_each_batched_slice_is_one_process_with_torch_imported_once(batched_run):
    workdir, result = batched_run
    jobs = allocations(result.stdout)
    cells = sorted(str(p.relative_to(workdir)) for p in cell_rows(workdir))
    slices = {name: job for name, job in jobs.items() if name.startswith("curvature-")}
    # data + init first, the cells in slices (curvature in two, train in one), then the rest.
    assert set(jobs) == {"before", *slices, "train-1of1", "after"}
    assert len(slices) == -(-len(cells) // GROUP_SIZE) == 2
    done = []
    for name, job in slices.items():
        log = allocation_log(workdir, name, job)
        # One Python process imported torch (a process per cell would each import it),
        # and one Snakemake ran every cell of the slice, no srun.
        assert len(re.findall(r"\|\s+torch$", log, flags=re.M)) == 1, name
        assert log.count("Building DAG of jobs") == 1
        assert "srun" not in log
        assert finished(log, "curvature") <= GROUP_SIZE
        done += re.findall(r"^\s+output: (results/curvature/\S+_seed\d+\.parquet),", log, re.M)
    assert sorted(done) == cells


def test_cancelled_batched_slice_resumes_without_recomputing(scratch_root):
    """scancel a slice in the middle: its finished cells stay, the rerun computes the rest."""
    scales = {f"curvature.scales.{k}.num": 15 for k in ("alpha", "temperature")}
    workdir = scratch(scratch_root, "batched-cancel", **{"training.enabled": False}, **scales)
    settings = batched_settings(workdir)
    target = "results/curvature.parquet"
    cmd = [sys.executable, str(BATCHED), "--directory", str(workdir), "--settings", str(settings)]
    with open(workdir / "first.log", "w") as log:
        run = subprocess.Popen([*cmd, target], cwd=workdir, stdout=log, stderr=log)
        wait_for_rows(workdir, 5, run)
        ids = [i for i, c in squeue_comments().items() if c.startswith("curvature-")]
        subprocess.run(["scancel", *ids], check=True)
        run.wait(timeout=300)
    first = (workdir / "first.log").read_text()
    assert ids, "the slice had ended before it could be cancelled: " + first[-2000:]
    assert run.returncode == 1 and "CANCELLED" in first, first[-3000:]
    kept = cell_rows(workdir)
    layers = [p.with_name(p.name.replace(".parquet", ".layers.parquet")) for p in kept]
    assert all(p.exists() for p in layers)
    before = stamps(kept + layers)
    resume = drive(workdir, target, settings=settings)
    assert resume.returncode == 0, (resume.stdout + resume.stderr)[-4000:]
    assert stamps(kept + layers) == before
    computed = sum(
        finished(allocation_log(workdir, name, job), "curvature")
        for name, job in allocations(resume.stdout).items()
        if name.startswith("curvature-")
    )
    total = len(cell_rows(workdir))
    print(f"\nslice cancelled with {len(kept)} of {total} cells done; resume computed {computed}")
    # 2 variants x 3 scalings x 15 scales, and residual's joint_residual (15): homogeneous's
    # joint_residual curve is its joint cells (m = k), 15 more rows in the table.
    assert total == 2 * 3 * 15 + 15 == len(pd.read_parquet(workdir / target)) - 15
    assert 5 <= len(kept) < total
    assert computed == total - len(kept)


def test_batched_slice_killed_by_time_limit_fails_the_run(scratch_root):
    """A slice over its SLURM time limit: the driver exits 1 naming TIMEOUT, in bounded time."""
    workdir = scratch(scratch_root, "batched-timeout", **ENDLESS)
    # startup 0 + 0.01 min per cell -> the one-cell train slice gets -t 1.
    settings = batched_settings(workdir, startup_minutes=0, train={"minutes_per_cell": 0.01})
    t0 = time.monotonic()
    result = drive(workdir, f"{TRAIN_CELL}.parquet", settings=settings, timeout=600)
    seconds = time.monotonic() - t0
    output = result.stdout + result.stderr
    print(f"\nbatched timeout run: exit {result.returncode} after {seconds:.0f} s")
    assert result.returncode == 1, output[-4000:]
    assert re.search(r"FAILED train-1of1: SLURM job \d+ TIMEOUT", output), output[-4000:]
    assert re.search(r"^slurm_batched: train-1of1: SLURM job \d+, .* -t 1,", output, re.M)
    assert seconds < 300
