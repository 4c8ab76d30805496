"""The real Snakemake CLI on the tiny synthetic grid, end to end, in a scratch folder.

The Snakefile reads ``config.yaml`` from the working directory, and the workflow profile
(``profiles/default``) is found next to the Snakefile, so a scratch folder holding
``configs/tiny.yaml`` as its ``config.yaml`` runs exactly what a user runs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from goldilocks.zone import goldilocks_zone

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
TINY = yaml.safe_load((ROOT / "configs/tiny.yaml").read_text())

pytestmark = pytest.mark.slow

# docs/method.md section 9: the columns every consumer relies on.
CELL_KEYS = [
    "architecture",
    "dataset",
    "variant",
    "scaling",
    "scale",
    "alpha",
    "temperature",
    "seed",
]
CURVATURE_COLUMNS = [
    *CELL_KEYS,
    *[
        "depth",
        "residual_depth",
        "output_exponent",
        "n_params",
        "loss",
        "accuracy",
        "logit_norm",
        "grad_norm",
        "nonfinite",
        "hterm_resolved",
    ],
    "compute_seconds",
    *(
        f"{m}_{k}"
        for m in ("hessian", "gterm", "hterm")
        for k in ("trace_ratio", "frac_pos", "eig_max", "eig_min", "spectral_norm")
    ),
]
TRAINING_COLUMNS = [
    *CELL_KEYS,
    *[
        "lr_base",
        "lr",
        "epoch",
        "train_loss",
        "train_acc",
        "test_loss",
        "test_acc",
        "diverged",
        "diverged_epoch",
    ],
    "compute_seconds",
]


def snakemake(
    workdir: Path, *args: str, check: bool = True, env: dict | None = None
) -> subprocess.CompletedProcess:
    cmd = [
        SNAKEMAKE,
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        "--cores",
        "2",
        *args,
    ]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def dry_run_jobs(workdir: Path, *args: str) -> dict[str, int]:
    """Jobs per rule a dry run would run (empty: nothing to be done)."""
    out = snakemake(workdir, "-n", *args).stdout
    return {r: int(n) for r, n in re.findall(r"^(\w+)\s+(\d+)$", out, re.M) if r != "total"}


def jobs_run(proc: subprocess.CompletedProcess, rule: str) -> int:
    return (proc.stdout + proc.stderr).count(f"localrule {rule}:")


def failed_before_any_job(proc: subprocess.CompletedProcess, workdir: Path) -> list[str]:
    """The stderr lines of a run that must have stopped before any job (profile notice aside)."""
    assert proc.returncode != 0
    assert not (workdir / "results").exists()
    return [ln for ln in proc.stderr.splitlines() if ln.strip() and "profile" not in ln]


def write_config(workdir: Path, config: dict) -> None:
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tiny")
    write_config(workdir, TINY)
    proc = snakemake(workdir)
    return workdir, proc


def test_tiny_grid_end_to_end(finished_run):
    workdir, proc = finished_run
    # 2 variants x 3 scalings x 3 scales, and residual's joint_residual (T = alpha^2);
    # homogeneous's (T = alpha^3 = alpha^k) is its joint cells, relabelled in the table.
    assert jobs_run(proc, "curvature") == 2 * 3 * 3 + 3
    assert jobs_run(proc, "train") == 2 * 2
    curvature = pd.read_parquet(workdir / "results/curvature.parquet")
    assert len(curvature) == 24
    joint_small = curvature[curvature["scaling"] == "joint_residual"]
    assert set(joint_small["variant"]) == {"homogeneous", "residual"}
    joint = curvature[curvature["scaling"] == "joint"]
    same = ["scale", "alpha", "temperature", "hessian_trace_ratio"]
    pd.testing.assert_frame_equal(
        joint_small.loc[joint_small["variant"] == "homogeneous", same].reset_index(drop=True),
        joint.loc[joint["variant"] == "homogeneous", same].reset_index(drop=True),
    )
    # the small-alpha side table: measured m against the declared one (3 and 2)
    small = pd.read_parquet(workdir / "results/small_alpha.parquet")
    m = small.groupby("variant")[["declared_m", "measured_m"]].first()
    assert m["declared_m"].to_dict() == {"homogeneous": 3, "residual": 2}
    assert (m["measured_m"] - m["declared_m"]).abs().max() < 0.01
    assert set(CURVATURE_COLUMNS) <= set(curvature.columns)
    assert not curvature["nonfinite"].any()
    # |Tr/||H||_F| <= sqrt(d) with d = curvature.subspace_dim = 10.
    assert curvature["hessian_trace_ratio"].abs().le(10**0.5).all()
    training = pd.read_parquet(workdir / "results/training.parquet")
    assert set(TRAINING_COLUMNS) <= set(training.columns)
    assert sorted(training["epoch"].unique()) == [0, 2, 4]
    # Curvature along training: at epoch 0 it is the curvature cell at initialisation
    # (same batch and R; float32 in training against float64 in the curvature stage).
    start = training[training["epoch"] == 0].merge(
        curvature[curvature["scaling"] == "temperature"], on=["variant", "scale", "seed"]
    )
    assert len(start) == 4
    assert (start["hessian_trace_ratio_x"] - start["hessian_trace_ratio_y"]).abs().max() < 1e-4
    assert training["hessian_trace_ratio"].notna().all()
    zone = pd.read_parquet(workdir / "results/goldilocks_zone.parquet")
    assert len(zone) == 2 * 4  # joint_residual for both (homogeneous's: its joint cells)
    layers = pd.read_parquet(workdir / "results/layer_ratios.parquet")
    assert set(layers["layer"]) >= {"fc1.weight", "block1.weight", "head.weight"}
    # The claims, every one with a verdict (most not testable on this tiny grid; one
    # seed: the sign-test claims are inconclusive, the exact identities still decide).
    claims = pd.read_parquet(workdir / "results/claims.parquet")
    assert set(claims["verdict"]) <= {"supported", "not_supported", "inconclusive", "not_testable"}
    assert "homogeneous_joint_flat" in set(claims["claim"])
    sign_test = claims[claims["decided_by"] == "sign_test_0.10"]
    assert (sign_test["verdict"] == "inconclusive").all()
    assert sign_test["inconclusive_reason"].str.startswith("too few seeds").all()
    assert "<table" in (workdir / "results/claims.html").read_text()
    assert (workdir / "results/figures/claims.png").stat().st_size > 10_000
    # Every figure the config has data for: no LayerNorm variant (3), no alpha training (4).
    for n in (1, 2, 5, 6, 7):
        for ext in ("pdf", "png"):
            assert (
                workdir / f"results/figures/fig{n}_lenet300100_synthetic.{ext}"
            ).stat().st_size > 10_000
    assert not list((workdir / "results/figures").glob("fig[34]_*"))
    assert not (workdir / "results/kl_layernorm.parquet").exists()


def test_report_has_every_figure_with_its_caption(finished_run, tmp_path):
    workdir, _ = finished_run
    report = tmp_path / "report.html"
    snakemake(workdir, "--report", str(report))
    html = report.read_text()
    assert report.stat().st_size > 100_000
    for n in (1, 2, 5, 6, 7):
        assert f"fig{n}_lenet300100_synthetic.png" in html
        assert f"Figure {n}" in html
    assert "claims.html" in html and "claims.png" in html
    # Captions are rendered with the run's config: the epochs of tiny.yaml, its pair.
    assert f"after {TINY['training']['epochs']} epochs" in html
    assert "Pairs: lenet300100 on synthetic" in html


def test_report_without_the_runs_configfile_is_one_line_naming_it(tmp_path):
    """A run with --configfile, then --report without it: one line naming a missing file
    and the flag to pass (was a WorkflowError about the quick default's figure); with the
    flag the report is built."""
    tiny = str(ROOT / "configs/tiny.yaml")
    snakemake(tmp_path, "--configfile", tiny)
    report = tmp_path / "report.html"
    proc = snakemake(tmp_path, "--report", str(report), check=False)
    assert proc.returncode != 0 and not report.exists()
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("goldilocks")]
    assert len(lines) == 1 and "WorkflowError" not in proc.stdout + proc.stderr
    assert lines[0].startswith("goldilocks: --report: results/") and "does not exist" in lines[0]
    assert lines[0].endswith(f"`snakemake --report {report} --configfile {tiny}`")
    snakemake(tmp_path, "--report", str(report), "--configfile", tiny)
    assert "fig1_lenet300100_synthetic.png" in report.read_text()


def test_figures_3_and_4_by_path_run_only_their_jobs(tmp_path):
    config = yaml.safe_load(yaml.safe_dump(TINY))
    config["variants"] = ["layernorm"]
    config["curvature"]["scalings"] = ["alpha", "temperature"]
    config["training"]["scalings"] = ["alpha", "temperature"]
    config["figures"]["kl_num"] = 7
    config["figures"]["zone_threshold"] = 0.3
    write_config(tmp_path, config)
    fig3 = snakemake(tmp_path, "results/figures/fig3_lenet300100_synthetic.pdf")
    ran = {r: jobs_run(fig3, r) for r in ("data", "init", "kl", "curvature", "train")}
    assert ran == {"data": 1, "init": 1, "kl": 1, "curvature": 0, "train": 0}
    kl = pd.read_parquet(tmp_path / "results/kl/lenet300100_synthetic.parquet")
    assert len(kl) == 7 and kl.loc[kl["alpha"] == 1.0, "kl"].item() == 0.0
    fig4 = snakemake(tmp_path, "results/figures/fig4_lenet300100_synthetic.pdf")
    # Only the alpha cells: 3 curvature scales, 2 training scales x 1 lr x 1 seed.
    assert (jobs_run(fig4, "curvature"), jobs_run(fig4, "train")) == (3, 2)
    assert jobs_run(fig4, "kl") == 0 and jobs_run(fig4, "aggregate_training") == 1
    assert (tmp_path / "results/figures/fig4_lenet300100_synthetic.png").stat().st_size > 10_000
    # The zone figure 4 draws was computed with the config's threshold.
    part = tmp_path / "results/aggregate/{}_lenet300100_synthetic_alpha.parquet"
    zone = pd.read_parquet(str(part).format("zone"))
    assert zone["threshold"].tolist() == [0.3]
    expected = goldilocks_zone(pd.read_parquet(str(part).format("curvature")), 0.3)
    pd.testing.assert_frame_equal(zone, expected)
    # The named target of figure 3 finds it built.
    again = snakemake(tmp_path, "fig3")
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (
            "results/figures/fig3_lenet300100_synthetic.pdf",
            "goldilocks: figure 3 needs a LayerNorm variant with k = 1 in variants (layernorm, "
            "combined, ...); asked for "
            "results/figures/fig3_lenet300100_synthetic.{pdf,png}",
        ),
        (
            "fig4",
            "goldilocks: figure 4 needs 'alpha' in training.scalings "
            "(and training.enabled: true); asked for rule fig4",
        ),
    ],
)
def test_unconfigured_figure_is_one_line_at_dag_build(tmp_path, target, message):
    write_config(tmp_path, TINY)
    proc = snakemake(tmp_path, target, check=False)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("goldilocks")]
    assert lines == [message]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


def test_rerun_runs_nothing_and_a_new_scale_runs_only_new_cells(finished_run, tmp_path):
    workdir, _ = finished_run
    again = snakemake(workdir)
    assert "Nothing to be done" in again.stdout + again.stderr
    # Copy the finished run and add one temperature value.
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy, symlinks=True)
    config = yaml.safe_load(yaml.safe_dump(TINY))
    config["curvature"]["scales"]["temperature"]["extra"] = [7.0]
    write_config(copy, config)
    proc = snakemake(copy)
    assert jobs_run(proc, "curvature") == 2  # one new scale x two variants x one seed
    assert jobs_run(proc, "train") == 0 and jobs_run(proc, "init") == 0
    assert len(pd.read_parquet(copy / "results/curvature.parquet")) == 26


def test_one_dry_run_per_rerun_class(finished_run, tmp_path):
    """docs/method.md section 9.4, one dry run per class on the finished tiny run: its
    execution keys changed together plan nothing; a presentation key plans only table,
    figure and claims jobs; a result key plans its stage's cells and what follows them."""
    workdir, _ = finished_run
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy, symlinks=True)
    (tmp_path / "mirror").mkdir()

    def changed(**sections):
        config = yaml.safe_load(yaml.safe_dump(TINY))
        for section, keys in sections.items():
            config.setdefault(section, {}).update(keys)
        write_config(copy, config)
        return dry_run_jobs(copy)

    execution = changed(
        data={"mirrors": [str(tmp_path / "mirror")], "root": "elsewhere", "download": True},
        training={"batch_cells": 2, "batch_wait": 1, "checkpoint_every": None},
    )
    assert execution == {}
    presentation = changed(figures={"zone_threshold": 0.4}, claims={"flat_spread": 0.3})
    assert presentation and set(presentation) <= {
        "aggregate_curvature",
        "aggregate_training",
        "tables",
        *(f"figure_{n}" for n in range(1, 8)),
        "claims",
        "all",
    }
    assert presentation["aggregate_curvature"] == 4  # the zone of each scaling
    # curvature.dtype: the 21 curvature cells, not the 4 training cells nor the inits.
    result = changed(curvature={"dtype": "float32"})
    assert result["curvature"] == 21 and "train" not in result and "init" not in result


def test_log_convergence_reruns_only_the_train_cells_and_gives_the_convergence_table(
    finished_run, tmp_path
):
    """training.log_convergence (docs/method.md sections 5.2 and 5.8): off (the default),
    a finished run records no param for it and plans nothing (above); switched on, it
    plans exactly the training cells and what follows them, and the tables job derives
    results/convergence.parquet with a window of logged epochs; a convergence threshold
    reruns only the tables and the claims."""
    workdir, _ = finished_run
    off = pd.read_parquet(workdir / "results/convergence.parquet")
    assert len(off) == 4 and set(off["status"]) <= {"unknown", "stalled", "diverged"}
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy, symlinks=True)
    config = yaml.safe_load(yaml.safe_dump(TINY))
    config["training"]["log_convergence"] = True
    write_config(copy, config)
    planned = dry_run_jobs(copy)
    assert planned["train"] == 4 and "curvature" not in planned and "init" not in planned
    proc = snakemake(copy)
    assert jobs_run(proc, "train") == 4
    on = pd.read_parquet(copy / "results/convergence.parquet")
    assert len(on) == 4 and (on["window_points"] >= 2).all()
    assert set(on["status"]) <= {"converged", "progressing", "stalled", "diverged"}
    epochs = pd.read_parquet(copy / "results/training.parquet")["epoch"]
    assert set(range(min(10, TINY["training"]["epochs"]) + 1)) <= set(epochs)
    assert dry_run_jobs(copy) == {}
    config["convergence"] = {"settle_tol": 0.2}
    write_config(copy, config)
    assert set(dry_run_jobs(copy)) <= {"tables", "claims", "all"}


def test_bad_config_is_one_line_before_any_job(tmp_path):
    config = yaml.safe_load(yaml.safe_dump(TINY))
    config["variants"] = ["homogeneous", "batchnorm"]
    write_config(tmp_path, config)
    proc = snakemake(tmp_path, check=False)
    assert failed_before_any_job(proc, tmp_path) == [
        "goldilocks: config key variants[1]: 'batchnorm' is invalid "
        "('batchnorm' is not one of ['homogeneous', 'bias', 'residual', 'layernorm', 'combined', "
        "'layernorm_affine', 'combined_affine'])"
    ]


def test_missing_dataset_fails_with_the_folders_searched(tmp_path):
    config = yaml.safe_load(yaml.safe_dump(TINY))
    config["pairs"] = [{"architecture": "lenet300100", "dataset": "fmnist"}]
    config["data"]["mirrors"] = [str(tmp_path / "mirror")]
    (tmp_path / "mirror").mkdir()
    write_config(tmp_path, config)
    proc = snakemake(tmp_path, "results/data/fmnist.pt", check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert f"not found in data.mirrors [{tmp_path / 'mirror'}]" in out
    assert "Traceback" not in out
    assert not (tmp_path / "results/data/fmnist.pt").exists()


def _cifar_config(tmp_path: Path, mirrors: list[Path]) -> None:
    config = yaml.safe_load(yaml.safe_dump(TINY))
    config["pairs"] = [{"architecture": "lenet5", "dataset": "cifar10"}]
    config["data"]["mirrors"] = [str(m) for m in mirrors]
    write_config(tmp_path, config)


def test_cifar10_miniature_archive_through_the_data_rule(tmp_path):
    """The real CLI's data job reads a miniature upstream archive from a mirror.

    Only the md5 checks are off (tests/cifar_mini.py, named by the test hook variable).
    """
    import cifar_mini
    import torch

    mirror = tmp_path / "mirror"
    written = cifar_mini.write_archive(mirror, n_per_batch=4, n_test=3)
    (tmp_path / "empty").mkdir()
    _cifar_config(tmp_path, [tmp_path / "empty", mirror])
    tests = str(Path(__file__).parent)
    env = {
        "GOLDILOCKS_TEST_CIFAR10_CLASS": "cifar_mini:UncheckedCIFAR10",
        "PYTHONPATH": os.pathsep.join(filter(None, (tests, os.environ.get("PYTHONPATH")))),
    }
    snakemake(tmp_path, "results/data/cifar10.pt", env=env)
    data = torch.load(tmp_path / "results/data/cifar10.pt", weights_only=True)
    assert data["train_images"].shape == (20, 3, 32, 32)
    assert data["test_images"].shape == (3, 3, 32, 32)
    assert torch.equal(data["train_images"], torch.from_numpy(written["train_images"]))
    assert data["train_labels"].tolist() == written["train_labels"]
    assert data["mean"].shape == (3,)

    # Where the bytes come from reruns nothing; a mirror with other content is one line.
    def parse_lines(mirrors):
        _cifar_config(tmp_path, mirrors)
        proc = snakemake(tmp_path, "-n", "results/data/cifar10.pt", env=env)
        assert "Nothing to be done" in proc.stdout + proc.stderr
        return [ln for ln in proc.stderr.splitlines() if ln.startswith("goldilocks:")]

    moved = tmp_path / "moved"
    shutil.copytree(mirror, moved)
    assert parse_lines([moved]) == []
    other = tmp_path / "other"
    cifar_mini.write_archive(other, n_per_batch=4, n_test=3, seed=1)
    (line,) = parse_lines([other])
    assert str(other / "cifar-10-python.tar.gz") in line
    assert "results/data/cifar10.pt" in line and "snakemake --forcerun data" in line


def test_missing_cifar10_fails_with_the_folders_searched(tmp_path):
    (tmp_path / "mirror").mkdir()
    _cifar_config(tmp_path, [tmp_path / "mirror"])
    proc = snakemake(tmp_path, "results/data/cifar10.pt", check=False)
    assert proc.returncode != 0
    log = (tmp_path / "logs/data/cifar10.log").read_text().strip().splitlines()
    assert len(log) == 1, log
    assert log[0].endswith(
        f"job failed: cifar10: not found in data.mirrors [{tmp_path / 'mirror'}] and "
        "data.download is false; put cifar-10-python.tar.gz (or its extracted "
        "cifar-10-batches-py/) into one of those folders"
    )
    out = proc.stdout + proc.stderr
    assert f"not found in data.mirrors [{tmp_path / 'mirror'}]" in out
    assert "Traceback" not in out
    # Snakemake shows the rule's line and the run-block wrapper's, not the frames below
    # (goldilocks.runtime.run_block).
    frames = [ln for ln in out.splitlines() if ln.startswith('  File "')]
    assert len(frames) == 2 and frames[0].endswith("in __rule_data"), frames
    assert not (tmp_path / "results/data/cifar10.pt").exists()


def test_lint_is_clean():
    proc = subprocess.run([SNAKEMAKE, "--lint"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_folder_without_config_yaml_merges_over_the_repositorys(tmp_path):
    """In a folder with no config.yaml (``--directory``), a --configfile that sets a few
    keys is merged over the repository's config.yaml, as in the repository: Snakemake
    alone would skip the missing file and run (or refuse) the partial config by itself."""
    part = tmp_path / "part.yaml"
    part.write_text("seeds: [0]\ntraining:\n  seeds: null\n")
    (tmp_path / "with").mkdir()
    shutil.copy(ROOT / "config.yaml", tmp_path / "with" / "config.yaml")
    (tmp_path / "without").mkdir()
    here = dry_run_jobs(tmp_path / "with", "all", "--configfile", str(part))
    there = dry_run_jobs(tmp_path / "without", "all", "--configfile", str(part))
    # one seed: alpha 9 scales (alpha_linear 15), temperature 15 for 5 variants, joint as
    # alpha, joint_residual of bias, residual, layernorm: 222 cells; training: 5 variants
    # x 2 scalings x 9 scales x 2 base rates
    assert there == here and there["curvature"] == 222 and there["train"] == 180, there
