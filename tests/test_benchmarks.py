"""The benchmarks rehearsed on the CPU. benchmarks/gpu.sh (``DEVICE=cpu``): every step of
the one call a lent GPU machine gets runs, at toy sizes, in a copy of the repository, and
writes what the call brings back (a GPU lease is short; a script that breaks there wastes
it). Every benchmark's ``--help``; precision.py on the tiny grid.
About 1.5 minutes, so outside the README's test command: ``pytest -m rehearsal`` (.ci/run)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
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
    assert "1332 training" in paper and "INCOMPLETE" not in paper, costs
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
    """precision.py walks every variant x scaling of a run (joint_residual where it
    applies: every built-in variant), config merged over config.yaml as Snakemake
    merges it."""
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
    assert ("homogeneous", "joint_residual") in scalings and len(rows) == 3 * 8


def _pilot():
    """benchmarks/pilot.py as a module (its rule needs no ``benchmarks`` on sys.path)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("pilot", ROOT / "benchmarks" / "pilot.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _best(curves: dict) -> pd.DataFrame:
    """``{variant: {T: [acc at epochs 5, 10, 20, 40]}}`` as :func:`best_accuracy` gives it."""
    return pd.DataFrame(
        {"variant": v, "temperature": t, "epoch": e, "acc": a, "lr_base": 0.1}
        for v, by_t in curves.items()
        for t, accs in by_t.items()
        for e, a in zip((5, 10, 20, 40), accs, strict=True)
    )


#: Hand-made curves, epochs 5, 10, 20, 40 (candidates N = 5, 10, 20), level 0.5 each.
STEADY = {  # cliff 1 -> 100 -> 100 -> 100; T = 1 within a point from N = 20: N = 20
    1.0: [0.50, 0.80, 0.895, 0.90],
    10.0: [0.30, 0.60, 0.70, 0.80],
    100.0: [0.20, 0.60, 0.60, 0.70],
    1000.0: [0.10, 0.20, 0.30, 0.40],
}
LUCKY = {  # N = 5 qualifies (cliff 10 at 5 and 10, T = 1 close), N = 10 does not: N = 20
    1.0: [0.90, 0.895, 0.90, 0.90],
    10.0: [0.60, 0.60, 0.60, 0.60],
    100.0: [0.20, 0.20, 0.60, 0.60],
}
MOVING = {  # the cliff moves between 20 and 40 epochs: no N qualifies
    1.0: [0.90, 0.90, 0.90, 0.90],
    10.0: [0.60, 0.60, 0.60, 0.60],
    100.0: [0.20, 0.20, 0.20, 0.60],
}


def test_pilot_picks_the_smallest_n_that_stays_decided():
    pilot = _pilot()
    table = pilot.pilot_table(_best({"a": STEADY, "b": LUCKY}), (5, 10, 20, 40), 40)
    assert table["N"].tolist() == [5, 10, 20] * 2  # 40: no 2N trained
    a = table[table["variant"] == "a"].set_index("N")
    assert a["level"].tolist() == pytest.approx([0.5] * 3)
    assert a["cliff_T"].tolist() == [1.0, 100.0, 100.0]
    assert a["cliff_T_2N"].tolist() == [100.0, 100.0, 100.0]
    assert a["stable"].tolist() == [False, True, True]
    assert a["close"].tolist() == [False, False, True]
    b = table[table["variant"] == "b"].set_index("N")
    assert b["qualifies"].tolist() == [True, False, True]
    chosen, overall = pilot.choose_n(table)
    assert chosen == {"a": 20, "b": 20} and overall == 20
    moving = pilot.pilot_table(_best({"a": STEADY, "c": MOVING}), (5, 10, 20), 40)
    chosen, overall = pilot.choose_n(moving)
    assert chosen == {"a": 20, "c": None} and overall is None
    # a variant whose T = 1 never trains above chance has no level and no cliff
    dead = pilot.pilot_table(_best({"d": {1.0: [0.1] * 4, 10.0: [0.1] * 4}}), (5,), 40)
    assert dead["cliff_T"].isna().all() and not dead["qualifies"].any()


def test_pilot_accuracy_is_the_best_rate_of_seed_means_and_divergence_counts_as_start():
    pilot = _pilot()
    rows = []
    for lr, seed, accs, gone in (
        (0.1, 0, [0.1, 0.5, 0.6], None),
        (0.1, 1, [0.1, 0.7, 0.8], None),  # seed mean at 0.1: 0.6, 0.7
        (1.0, 0, [0.2, 0.9], 1),  # diverged at epoch 1 (its row NaN): 0.2 from then on
        (1.0, 1, [0.1, 0.9, 0.9], None),  # seed mean at 1.0: 0.55, 0.55
    ):
        for epoch, acc in enumerate(accs):
            nan = gone is not None and epoch == gone
            rows.append({"variant": "v", "temperature": 1.0, "lr_base": lr, "seed": seed,
                         "epoch": epoch, "train_acc": float("nan") if nan else acc,
                         "diverged_epoch": gone})  # fmt: skip
    best = pilot.best_accuracy(pilot.accuracy_at(pd.DataFrame(rows), [1, 2]))
    assert best["acc"].tolist() == pytest.approx([0.6, 0.7])
    assert best["lr_base"].tolist() == [0.1, 0.1]
    assert pilot.cliff_index([1, 10, 100], [0.9, float("nan"), 0.9], 0.5) == 0
    assert pilot.trained_temperatures(316.228) == [1.0, 316.228, 3162.28, 31622.8]
    assert pilot.trained_temperatures(float("nan")) == [1.0]


@pytest.mark.skipif(not FMNIST.is_dir(), reason=f"{FMNIST} missing (dataset-fashion-mnist)")
def test_pilot_quick_runs_on_fashion_mnist(tmp_path):
    """``--quick``: 5 variants, 8 epochs on 64 images, zone from a 3-point sweep, in
    seconds; its table has every variant x candidate N, and its choice is
    :func:`choose_n` of that table."""
    pilot = _pilot()
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.pilot", "--quick", "--out", str(tmp_path / "out"),
         "--data", str(tmp_path / "absent.pt"), "--root", str(tmp_path / "tv")],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "pilot's N:" in run.stdout and "ms thread CPU per cell-epoch" in run.stdout
    table = pd.read_csv(tmp_path / "out" / "table.csv")
    variants = ["homogeneous", "bias", "residual", "layernorm", "combined"]
    assert table["variant"].tolist() == [v for v in variants for _ in (1, 2, 4)]
    assert table["N"].tolist() == [1, 2, 4] * 5
    for column in ("cliff_T", "cliff_T_2N", "acc_T1", "acc_T1_final", "stable", "close"):
        assert column in table
    assert table["acc_T1"].between(0, 1).all()
    runs = pd.read_csv(tmp_path / "out" / "runs.csv")
    assert {0, 1, 2, 4, 8} <= set(runs["epoch"]) and runs["epoch"].max() == 8
    doc = json.loads((tmp_path / "out" / "pilot.json").read_text())
    chosen, overall = pilot.choose_n(table)
    assert doc["chosen_per_variant"] == chosen and doc["chosen_n"] == overall
    for v in variants:
        temps = doc["temperatures"][v]
        assert temps[0] == 1.0 and len(temps) in (1, 3, 4), temps
        assert set(runs[runs["variant"] == v]["temperature"]) == set(temps)
