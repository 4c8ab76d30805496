"""A user's own model through the real Snakemake CLI: registered from a module written
into the run's folder, the tiny synthetic grid end to end, and its one-line failures."""

from __future__ import annotations

import copy
import re

import pandas as pd
import pytest
import torch
import yaml
from test_workflow import (
    CURVATURE_COLUMNS,
    ROOT,
    TINY,
    dry_run_jobs,
    failed_before_any_job,
    jobs_run,
    snakemake,
    write_config,
)

from goldilocks.grid import log_grid

pytestmark = pytest.mark.slow

MODULE = '''
import torch
from torch import nn


class Net(nn.Module):
    """flatten -> 12 -> K. "bn": BatchNorm1d after the first layer (buffers; alpha scales
    its gamma and beta, so k = 3). "normed": an affine LayerNorm there instead (exempt
    from alpha, so k = 1)."""

    def __init__(self, variant, in_shape, num_classes):
        super().__init__()
        c, h, w = in_shape
        self.fc = nn.Linear(c * h * w, 12, bias=False)
        self.bn = nn.BatchNorm1d(12) if variant == "bn" else nn.Identity()
        self.norm = nn.LayerNorm(12) if variant == "normed" else nn.Identity()
        self.head = nn.Linear(12, num_classes, bias=False)

    def forward(self, x):
        return self.head(torch.relu(self.norm(self.bn(self.fc(x.flatten(1))))))


def build(variant, in_shape, num_classes):
    return Net(variant, in_shape, num_classes)
'''

MODELS = {
    "usermlp": {
        "factory": "usermodels:build",
        "alpha_exempt": ["norm.*"],
        "variants": {
            "bn": {"depth": 2, "output_exponent": 3},
            "normed": {"depth": 2, "output_exponent": 1, "norm": True},
        },
    }
}


def _setup(workdir, models=MODELS, module=MODULE):
    config = copy.deepcopy(TINY)
    config["pairs"] = [{"architecture": "usermlp", "dataset": "synthetic"}]
    config["models"] = copy.deepcopy(models)
    (workdir / "usermodels.py").write_text(module)
    write_config(workdir, config)


def _one_line(proc, log_file, message):
    """The job failed with ``message`` as the one line of its log, no traceback anywhere."""
    assert proc.returncode != 0
    log = log_file.read_text().strip().splitlines()
    assert len(log) == 1, log
    assert log[0].endswith(f"job failed: {message}")
    out = proc.stdout + proc.stderr
    assert message in out
    assert "Traceback" not in out


def test_registered_model_end_to_end(tmp_path):
    _setup(tmp_path)
    proc = snakemake(tmp_path)
    assert jobs_run(proc, "init") == 2
    assert jobs_run(proc, "curvature") == 2 * 3 * 3
    assert jobs_run(proc, "train") == 2 * 2
    curvature = pd.read_parquet(tmp_path / "results/curvature.parquet")
    assert set(CURVATURE_COLUMNS) <= set(curvature.columns)
    assert set(curvature["variant"]) == {"bn", "normed"}
    assert set(curvature["depth"]) == {2}
    assert not curvature["nonfinite"].any()
    assert curvature["hessian_trace_ratio"].abs().le(10**0.5).all()
    # Joint temperature T = alpha^k with the declared k; bn and normed sweep their grids.
    joint = curvature[curvature["scaling"] == "joint"]
    k = joint["variant"].map({"bn": 3, "normed": 1})
    assert (joint["temperature"] / joint["alpha"] ** k).sub(1).abs().max() < 1e-9
    assert sorted(joint.loc[joint["variant"] == "normed", "alpha"]) == [0.01, 1.0, 100.0]
    # The init stage measured k and logged it.
    log = (tmp_path / "logs/init/usermlp_synthetic/bn/seed0.log").read_text()
    assert "output exponent" in log and "measured 3.000" in log
    # Buffers travelled in the init file (format 2).
    init = torch.load(tmp_path / "results/init/usermlp_synthetic/bn/seed0.pt", weights_only=True)
    assert init["format"] == 2 and "bn.running_var" in init["buffers"]
    layers = pd.read_parquet(tmp_path / "results/layer_ratios.parquet")
    assert set(layers["layer"]) == {"fc.weight", "bn.weight", "bn.bias", "head.weight",
                                    "norm.weight", "norm.bias"}  # fmt: skip
    training = pd.read_parquet(tmp_path / "results/training.parquet")
    assert set(training["variant"]) == {"bn", "normed"}
    assert training["train_loss"].notna().all() and not training["diverged"].any()
    # Figure 3 for the LayerNorm variant with k = 1; the zone and every figure.
    kl = pd.read_parquet(tmp_path / "results/kl_layernorm.parquet")
    assert set(kl["variant"]) == {"normed"}
    assert kl["kl"].min() < 1e-12  # alpha = 1: the output scales linearly exactly
    zone = pd.read_parquet(tmp_path / "results/goldilocks_zone.parquet")
    assert len(zone) == 2 * 3
    for n in (1, 2, 3, 5, 6):
        assert (tmp_path / f"results/figures/fig{n}_usermlp_synthetic.png").stat().st_size > 0
    # Editing the model's config entry (here its factory) reruns the model's cells.
    assert dry_run_jobs(tmp_path) == {}
    models = copy.deepcopy(MODELS)
    models["usermlp"]["factory"] = "usermodels:build_again"
    _setup(tmp_path, models, MODULE + "\nbuild_again = build\n")
    planned = dry_run_jobs(tmp_path)
    assert planned["model_spec"] == 1 and planned["init"] == 2
    assert planned["curvature"] == 2 * 3 * 3 and planned["train"] == 2 * 2


def test_a_wrong_declared_exponent_stops_the_init_job_with_one_line(tmp_path):
    models = copy.deepcopy(MODELS)
    models["usermlp"]["variants"]["normed"]["output_exponent"] = 2
    _setup(tmp_path, models)
    target = "results/init/usermlp_synthetic/normed/seed0.pt"
    proc = snakemake(tmp_path, target, check=False)
    _one_line(
        proc,
        tmp_path / "logs/init/usermlp_synthetic/normed/seed0.log",
        "model usermlp, variant normed: declared output_exponent 2, measured 1.00 (slope of "
        "log||f|| against log alpha at alpha = 10^3..10^5 in float64, tolerance 0.05); fix "
        "models.usermlp.variants.normed.output_exponent (null if no single power holds)",
    )
    assert not (tmp_path / target).exists()


def test_a_factory_module_that_is_not_there_is_one_line_before_any_job(tmp_path):
    models = copy.deepcopy(MODELS)
    models["usermlp"]["factory"] = "usermodelz:build"
    _setup(tmp_path, models)
    proc = snakemake(tmp_path, check=False)
    assert failed_before_any_job(proc, tmp_path) == [
        "goldilocks: config key models.usermlp.factory: module 'usermodelz' of "
        "'usermodelz:build' not found (searched the working directory, the repository root "
        "and the installed packages)"
    ]


def test_a_factory_that_does_not_import_fails_its_job_with_one_line(tmp_path):
    _setup(tmp_path, module="import usermodels_missing_dependency\n")
    target = "results/init/usermlp_synthetic/bn/seed0.pt"
    proc = snakemake(tmp_path, target, check=False)
    _one_line(
        proc,
        tmp_path / "logs/init/usermlp_synthetic/bn/seed0.log",
        "models factory 'usermodels:build': module 'usermodels' does not import "
        "(ModuleNotFoundError: No module named 'usermodels_missing_dependency')",
    )


def _readme_example() -> tuple[str, dict]:
    """The model file and the config lines of the README's "Your own model"."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Your own model\n", 1)[1].split("\n## ", 1)[0]
    blocks = dict(re.findall(r"```(python|yaml)\n(.*?)```", section, re.S))
    return blocks["python"], yaml.safe_load(blocks["yaml"])


def test_the_readme_example_runs(tmp_path):
    """The README's model and config lines, as a user copies them: the quick default's
    job graph, and (on synthetic data, no download) the init stage, whose measured k must
    match the README's declarations, and one curvature cell."""
    module, lines = _readme_example()
    (tmp_path / "mymodels.py").write_text(module)
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config.update(lines)
    write_config(tmp_path, config)
    dry = snakemake(tmp_path, "-n")
    # 3 variants x 3 scalings (joint_residual needs a skip) x the grid's scales x seeds:
    # alpha and joint on the alpha grid (alpha_linear for k = 1), T on the T grid, at the
    # declared depth
    scales = config["curvature"]["scales"]
    per_seed = 0
    for numbers in lines["models"]["mymlp"]["variants"].values():
        alpha = scales["alpha_linear" if numbers["output_exponent"] == 1 else "alpha"]
        per_seed += 2 * len(log_grid(alpha, numbers["depth"]))
        per_seed += len(log_grid(scales["temperature"], numbers["depth"]))
    n_cells = per_seed * len(config["seeds"])
    assert re.search(rf"^curvature +{n_cells}$", dry.stdout, re.M), dry.stdout[-1500:]
    config = copy.deepcopy(TINY)
    config.update(lines)
    config["pairs"] = [{"architecture": "mymlp", "dataset": "synthetic"}]
    write_config(tmp_path, config)
    variants = lines["models"]["mymlp"]["variants"]
    targets = [f"results/init/mymlp_synthetic/{v}/seed0.pt" for v in variants]
    cell = "results/curvature/mymlp_synthetic/layernorm/joint/scale100_seed0.parquet"
    snakemake(tmp_path, *targets, cell)
    for variant, numbers in variants.items():
        log = (tmp_path / f"logs/init/mymlp_synthetic/{variant}/seed0.log").read_text()
        measured = float(re.search(r"measured ([0-9.]+)", log).group(1))
        assert abs(measured - numbers["output_exponent"]) <= 1e-3, variant
    row = pd.read_parquet(tmp_path / cell)
    assert row["temperature"].item() == 100.0 and not row["nonfinite"].item()
