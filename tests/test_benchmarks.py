"""The benchmarks rehearsed on the CPU. benchmarks/gpu.sh (``DEVICE=cpu``): every step of
the one call a lent GPU machine gets runs, at toy sizes, in a copy of the repository, and
writes what the call brings back (a GPU lease is short; a script that breaks there wastes
it). Every benchmark's ``--help``; precision.py on the tiny grid.
About 1.5 minutes, so outside the README's test command: ``pytest -m rehearsal`` (.ci/run)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
FMNIST = Path("/usr/share/datasets/fashion-mnist")  # config.yaml's first data mirror
COPIED = (
    "Snakefile",
    "config.yaml",
    "configs",
    "workflow",
    "profiles",
    "src",
    "envs",
    "benchmarks",
)


@pytest.mark.rehearsal  # not in the README's test command: .ci/run runs -m rehearsal
@pytest.mark.skipif(not FMNIST.is_dir(), reason=f"{FMNIST} missing (dataset-fashion-mnist)")
def test_gpu_script_rehearsed_on_the_cpu(tmp_path):
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, tmp_path / name)
    out = tmp_path / "out"
    env = {**os.environ, "DEVICE": "cpu", "PY": sys.executable, "OUT": str(out)}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    run = subprocess.run(
        ["bash", "benchmarks/gpu.sh"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-3000:]
    for step in (
        "1. training",
        "1b. grouped",
        "2. paper-grid",
        "3. TF32",
        "4. the paper grid",
        "done",
    ):
        assert f"== {step}" in log, log[-3000:]
    # 1: the benchmark's table and its JSON, which step 2 read instead of measuring again
    bench = (out / "bench_training.txt").read_text()
    assert "floor lenet300100/fmnist" in bench and "loop  64" in bench, bench
    # 1b: every way of every grouped layer timed, and each agrees with the grouped conv
    rows = [r for r in bench.splitlines() if " conv2 " in r or " block " in r]
    assert len(rows) == 3 * 4, bench
    assert all(float(r.split()[-1]) < 1e-4 for r in rows), rows
    costs = (out / "paper_cost.txt").read_text()
    paper = costs.split("configs/extended.yaml")[0]
    assert "1170 training" in paper and "INCOMPLETE" not in paper, costs
    assert "INCOMPLETE: training of lenet5/cifar10" in costs, costs  # not benchmarked
    # 3: TF32 does nothing on the CPU: every difference is exactly zero
    tf32 = (out / "tf32.txt").read_text()
    assert "in 2 of 2 groups" in tf32 and tf32.count("+0.00000") == 4, tf32
    # 4: the 5 cells of the rehearsal grid (one per variant) ran through profiles/gpu
    summary = (out / "grid_summary.txt").read_text()
    assert "finished cells" in summary and ": 5 (" in summary, summary
    assert "snakemake exit 0" in log, (out / "grid.log").read_text()[-3000:]
    assert (out / "grid_results.tar.gz").stat().st_size > 1000


def test_benchmarks_import_the_installed_package():
    """No benchmark puts ``src/`` (or its own folder) on ``sys.path``: they run as modules
    (``python -m benchmarks.NAME``) on the package setup.sh installs."""
    for script in sorted((ROOT / "benchmarks").glob("*.py")):
        text = script.read_text()
        assert '"src"' not in text and '/ "benchmarks")' not in text, script.name
        assert "from timing import" not in text and "from training import" not in text


@pytest.mark.rehearsal
def test_every_benchmark_explains_itself():
    """``--help`` prints each script's usage and purpose and runs nothing; the timing
    helper says it is not a benchmark; the shell scripts print their header."""
    for script in sorted((ROOT / "benchmarks").glob("*.py")):
        if script.name == "__init__.py":
            continue
        run = subprocess.run(
            [sys.executable, "-m", f"benchmarks.{script.stem}", "--help"],
            capture_output=True, text=True, timeout=120, cwd=ROOT,
        )  # fmt: skip
        out = run.stdout + run.stderr
        if script.name == "timing.py":
            assert run.returncode == 1 and "not a benchmark" in out, out
            continue
        doc_first_line = script.read_text().split('"""')[1].splitlines()[0]
        assert run.returncode == 0 and out.startswith("usage:"), (script.name, out)
        assert doc_first_line in out, (script.name, out)
    for script in ("gpu.sh", "gpu_carry.sh"):
        run = subprocess.run(
            ["bash", str(ROOT / "benchmarks" / script), "--help"], capture_output=True, text=True
        )
        assert run.returncode == 0 and "--help prints this header" in run.stdout, run.stdout
        assert "set -" not in run.stdout and not (ROOT / "gpu-out").exists()
        bad = subprocess.run(
            ["bash", str(ROOT / "benchmarks" / script), "--budget=60"], capture_output=True,
            text=True,
        )  # fmt: skip
        assert bad.returncode == 2 and "no arguments expected" in bad.stderr, bad.stderr


@pytest.mark.rehearsal
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_benchmarks_on_a_missing_gpu_say_so_in_one_line():
    """``--device cuda`` without a GPU: the workflow's device line, not a CUDA traceback."""
    for script in sorted((ROOT / "benchmarks").glob("*.py")):
        if script.name in ("__init__.py", "timing.py", "grid_progress.py", "job_overhead.py",
                           "slurm_overhead.py"):  # fmt: skip
            continue  # no --device option
        run = subprocess.run(
            [sys.executable, "-m", f"benchmarks.{script.stem}", "--device", "cuda"],
            capture_output=True, text=True, timeout=120, cwd=ROOT,
        )  # fmt: skip
        out = (run.stdout + run.stderr).strip()
        assert run.returncode != 0 and "Traceback" not in out, (script.name, out)
        assert out.splitlines()[-1].startswith(
            f"{script.name}: --device 'cuda' is not available: this machine has no CUDA GPU"
        ), (script.name, out)


@pytest.mark.rehearsal
def test_precision_benchmark_runs_on_a_config_with_joint_residual(tmp_path):
    """precision.py walks every variant x scaling of a run: joint_residual only where it
    applies (it raised on the first variant without a skip), config merged over
    config.yaml as Snakemake merges it."""
    snakemake = str(Path(sys.executable).parent / "snakemake")
    inits = [
        f"results/init/lenet300100_synthetic/{v}/seed0.pt" for v in ("homogeneous", "residual")
    ]
    build = subprocess.run(
        [snakemake, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
         "--cores", "2", *inits, "--configfile", str(ROOT / "configs/tiny.yaml")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-2000:]
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.precision", "--workdir", str(tmp_path),
         "--config", str(ROOT / "configs/tiny.yaml")],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    rows = [ln.split() for ln in run.stdout.splitlines() if ln.startswith(("homog", "resid"))]
    scalings = {(r[0], r[1]) for r in rows}
    assert ("residual", "joint_residual") in scalings
    assert ("homogeneous", "joint_residual") not in scalings and len(rows) == 3 * 7
