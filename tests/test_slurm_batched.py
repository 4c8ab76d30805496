"""workflow/slurm_batched.py without a cluster: its plan (goldilocks.slurm_plan: settings
checked against their schema, the dry-run parser, the allocations) and its dry run.

Its runs on SLURM (results equal to a local run, a cancelled slice resumed, a slice over
its time limit) are in tests/test_slurm.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from goldilocks import slurm_plan as sb

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ROOT / "profiles/slurm-batched/sbatch.yaml"
SCHEMA = ROOT / "workflow/schemas/sbatch.schema.yaml"


def load(path=SETTINGS) -> dict:
    return sb.load_settings(path, SCHEMA)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A folder with configs/tiny.yaml and the driver's dry run of it (nothing built)."""
    workdir = tmp_path_factory.mktemp("batched")
    shutil.copy(ROOT / "configs/tiny.yaml", workdir / "config.yaml")
    result = subprocess.run(
        [sys.executable, str(ROOT / "workflow/slurm_batched.py"), "--dry-run"],
        cwd=workdir,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, result.stdout


def test_shipped_settings_load():
    settings = load()
    assert set(settings["cells"]) == {"curvature", "train"}
    assert settings["before"]["rules"] == ["data", "model_spec", "init"]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("partitoin", "x", "unknown key 'partitoin'"),
        ("cells.curvature.cpus", 0, "cells.curvature.cpus: expected a positive integer"),
        ("cells.train.minutes_per_cell", "long", "cells.train.minutes_per_cell: expected"),
        ("before.rules", "init", "before.rules: expected a list"),
        ("cells", {}, "cells: expected a mapping of cell rules"),
        ("cells.train.cpus", 2.0, "cells.train.cpus: expected a positive integer, got 2.0"),
        ("cells.train.minutes", 5, "cells.train: unknown key 'minutes' (allowed: cells_per"),
        ("after.sbatch_extra", "--qos=x", "after.sbatch_extra: expected a list of arguments"),
        ("poll_seconds", None, "poll_seconds: expected a number >= 0, got None"),
        ("account", 7, "account: expected a name or null, got 7"),
    ],
)
def test_bad_settings_are_one_line_errors(tmp_path, key, value, message):
    settings = yaml.safe_load(SETTINGS.read_text())
    *path, leaf = key.split(".")
    node = settings
    for part in path:
        node = node[part]
    node[leaf] = value
    file = tmp_path / "sbatch.yaml"
    file.write_text(yaml.safe_dump(settings))
    with pytest.raises(sb.DriverError) as err:
        load(file)
    assert message in str(err.value) and str(file) in str(err.value)
    assert "\n" not in str(err.value)


def test_settings_that_are_no_mapping_are_one_line_errors(tmp_path):
    file = tmp_path / "sbatch.yaml"
    file.write_text("- cells\n")
    with pytest.raises(sb.DriverError, match=r"yaml: expected a mapping of settings, got \["):
        load(file)
    file.write_text("partition: x\n")
    with pytest.raises(sb.DriverError, match=r"yaml: 'cells' is a required property$"):
        load(file)


def test_split_covers_everything_in_order_with_balanced_slices():
    items = list(range(23))
    slices = sb.split(items, 10)
    assert [len(s) for s in slices] == [8, 8, 7]
    assert [x for s in slices for x in s] == items
    assert sb.split([], 5) == []
    assert sb.split(items, 100) == [items]


def test_dry_run_lists_each_due_job_with_all_its_outputs(tiny):
    workdir, _ = tiny
    dry = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "-n"],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=True,
    )
    jobs = sb.due_jobs(dry.stdout)
    # tiny: 2 variants x 3 scalings x 3 scales + residual's joint_residual 3 (homogeneous's
    # is its joint cells, m = k); 2 variants x 2 temperatures training cells.
    assert len(jobs["curvature"]) == 21 and len(jobs["train"]) == 4
    assert len(jobs["init"]) == 2 and len(jobs["data"]) == 1
    for row, layers in jobs["curvature"]:
        assert layers == row.replace(".parquet", ".layers.parquet")
    # A dry run whose job blocks cannot be read fails loudly, not with a wrong plan.
    broken = dry.stdout.replace("    output: results/curvature", "    outputs: results/curvature")
    with pytest.raises(sb.DriverError, match="could not read the dry run"):
        sb.due_jobs(broken, with_outputs=["curvature"])
    without_block = dry.stdout.replace("rule init:", "rule  init:", 1)
    with pytest.raises(sb.DriverError, match="could not read the dry run"):
        sb.due_jobs(without_block)


def test_plan_builds_shared_inputs_first_then_slices_then_the_rest(tiny):
    _, out = tiny
    due = out.split("due (Snakemake dry run): ")[1].splitlines()[0]
    counts = dict(item.rsplit(" ", 1) for item in due.split(", "))
    assert {r: counts[r] for r in ("data", "init", "curvature", "train")} == {
        "data": "1", "init": "2", "curvature": "21", "train": "4"
    }  # fmt: skip
    settings = load()
    settings["cells"]["curvature"].update(cells_per_slice=7, cpus=2, minutes_per_cell=0.5)
    jobs = {
        "data": [("d.pt",)],
        "init": [("i1.pt",), ("i2.pt",)],
        "curvature": [(f"c{i}.parquet", f"c{i}.layers.parquet") for i in range(18)],
        "train": [(f"t{i}.parquet",) for i in range(4)],
        "tables": [("results/curvature.parquet",)],
    }
    stages = sb.plan(settings, jobs)
    (before,) = stages["before"]
    assert before.targets == ("d.pt", "i1.pt", "i2.pt")
    assert before.allowed_rules == ("data", "model_spec", "init")
    slices = [a for a in stages["cells"] if a.allowed_rules == ("curvature",)]
    assert [a.name for a in slices] == ["curvature-1of3", "curvature-2of3", "curvature-3of3"]
    # Both outputs of a cell always travel together, each cell in exactly one slice.
    targets = [t for a in slices for t in a.targets]
    assert targets == [f for job in jobs["curvature"] for f in job]
    # startup 3 + ceil(0.5 min x 6 cells / 2 CPUs) = 5 minutes.
    assert [a.minutes for a in slices] == [5, 5, 5]
    (train,) = [a for a in stages["cells"] if a.allowed_rules == ("train",)]
    assert train.targets == tuple(f for (f,) in jobs["train"])
    (after,) = stages["after"]
    assert after.targets == () and after.allowed_rules == ()
    # Nothing due: nothing submitted.
    assert sb.plan(settings, {}) == {"before": [], "cells": [], "after": []}


def test_a_registered_models_spec_is_built_before_the_slices(tmp_path):
    """A user's model: its init files read results/models/<name>.json (rule model_spec),
    so the shipped settings build it in the ``before`` allocation (a slice allowed only
    its cell rule cannot)."""
    dry = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "-n",
         "--configfile", str(ROOT / "configs/vit.yaml")],
        cwd=tmp_path, capture_output=True, text=True, check=True,
    )  # fmt: skip
    jobs = sb.due_jobs(dry.stdout)
    (before,) = sb.plan(load(), jobs)["before"]
    for rule in ("data", "model_spec", "init"):
        assert jobs[rule] and set(f for job in jobs[rule] for f in job) <= set(before.targets)
    assert "results/models/vit.json" in before.targets


def test_settings_left_empty_take_the_defaults(tmp_path):
    """``before:`` with no value and a cell rule with no settings load and plan (both
    were an AttributeError); the shared inputs are still built first (in ``after`` the
    slices, allowed only their cell rule, would have missed them)."""
    file = tmp_path / "sbatch.yaml"
    file.write_text("before:\ncells:\n  curvature:\n")
    settings = load(file)
    stages = sb.plan(settings, {"data": [("d.pt",)], "curvature": [("c.parquet",)]})
    (before,) = stages["before"]
    assert before.targets == ("d.pt",) and before.allowed_rules == sb.BEFORE_RULES
    assert [a.name for a in stages["cells"]] == ["curvature-1of1"] and not stages["after"]


def test_dry_run_prints_the_sbatch_lines_and_submits_nothing(tiny):
    workdir, out = tiny
    lines = [line for line in out.splitlines() if ": sbatch " in line]
    assert [line.split(":")[0] for line in lines] == ["before", "cells", "cells", "after"]
    assert all("--parsable" in line and "--partition=debug" in line for line in lines)
    assert "--nolock --allowed-rules curvature -- results/curvature/" in out
    assert not (workdir / "results").exists()
    assert not (workdir / ".snakemake/slurm_batched/active_jobs").exists()


def test_several_configfiles_are_merged_in_order(tmp_path):
    """``--configfile A B`` takes both files, as Snakemake's option does."""
    shutil.copy(ROOT / "configs/tiny.yaml", tmp_path / "config.yaml")
    (tmp_path / "a.yaml").write_text("variants: [homogeneous]\nseeds: [0]\n")
    (tmp_path / "b.yaml").write_text("seeds: [0, 1]\n")
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "workflow/slurm_batched.py"),
            "--dry-run",
            "--configfile",
            "a.yaml",
            "b.yaml",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # a.yaml: homogeneous only (3 scalings x 3 scales; joint_residual is joint); b.yaml after it:
    # two seeds. (Passed as two --configfile options, Snakemake kept only b.yaml: 42.)
    due = dict(
        re.findall(
            r"(\w+) (\d+)", result.stdout.split("due (Snakemake dry run):")[1].splitlines()[0]
        )
    )
    assert due["init"] == "2" and due["curvature"] == str(3 * 3 * 2), result.stdout[:500]
