"""The job graph's plan (goldilocks.plan) from real configs: tables, figures, messages."""

import re
from pathlib import Path

import pytest
import yaml
from conftest import heavy_imports
from snakemake.utils import update_config

from goldilocks import plan
from goldilocks.config import load_merged
from goldilocks.figure_spec import BY_NUMBER, SPEC, Figure
from goldilocks.plan import FIGURE, TABLE, Plan

ROOT = Path(__file__).resolve().parents[1]
PAIR = ("lenet300100", "synthetic")
TRAINED = "in training.scalings (and training.enabled: true)"


def _plan(text: str = "", base: str = "configs/tiny.yaml") -> Plan:
    """The plan of ``base`` (over config.yaml) with the YAML ``text`` merged over it."""
    config = load_merged(base, ROOT)
    update_config(config, yaml.safe_load(text) or {})
    return Plan(config)


def test_tiny_config_draws_the_figures_it_has_data_for():
    p = _plan()
    # tiny: homogeneous and residual (no LayerNorm: no 3), temperature training (no 4)
    assert p.drawable() == [1, 2, 5, 6, 7]
    assert p.figure_problem(4) == f"figure 4 needs 'alpha' {TRAINED}"
    assert p.figure_problem(3).startswith("figure 3 needs a LayerNorm variant with k = 1")
    assert p.figure_targets() == [
        f"results/figures/fig{n}_lenet300100_synthetic.{e}"
        for n in (1, 2, 5, 6, 7)
        for e in ("pdf", "png")
    ]


def test_quick_default_draws_every_figure():
    p = _plan(base="config.yaml")
    assert p.drawable() == [f.number for f in SPEC]
    assert p.figure_pairs(3) == [("lenet300100", "fmnist")]


def test_a_figure_reads_only_its_scalings_parts():
    p = _plan()
    fig2 = p.figure_tables(2, *PAIR)
    assert set(fig2) == {"training", "zone"}
    part = {"architecture": PAIR[0], "dataset": PAIR[1], "scaling": "temperature"}
    assert fig2["training"] == [TABLE.format(kind="training", **part)]
    assert fig2["zone"] == [TABLE.format(kind="zone", **part)]
    fig1 = p.figure_tables(1, *PAIR)
    scalings = [path.rsplit("_", 1)[1].removesuffix(".parquet") for path in fig1["zone"]]
    assert scalings == ["alpha", "temperature", "joint", "residual"]  # joint_residual's tail
    assert len(fig1["curvature"]) == 4 and "training" not in fig1
    # figure 7: training of every trained scaling (tiny: temperature only)
    assert p.figure_tables(7, *PAIR)["training"] == fig2["training"]


def test_untrained_and_unconfigured_pairs_say_why():
    text = """
pairs:
  - {architecture: lenet300100, dataset: synthetic}
  - {architecture: lenet5, dataset: synthetic}
training:
  pairs:
    - {architecture: lenet5, dataset: synthetic}
"""
    p = _plan(text)
    assert p.figure_pairs(2) == [("lenet5", "synthetic")]
    assert p.figure_pairs(1) == [PAIR, ("lenet5", "synthetic")]
    assert p.figure_problem(2, PAIR) == (
        "figure 2 needs lenet300100/synthetic in training.pairs (trained: lenet5/synthetic)"
    )
    assert p.figure_problem(1, ("resnet4", "fmnist")).startswith(
        "figure 1 needs resnet4/fmnist in pairs (configured: lenet300100/synthetic, "
    )
    assert p.figure_problem(1, PAIR) is None
    assert p.table_parts("training", pair=PAIR) == []  # the untrained pair has no parts


def test_without_training_no_training_figure():
    p = _plan("training: {enabled: false}")
    assert p.drawable() == [1, 6]
    assert p.figure_problem(7) == f"figure 7 needs a scaling {TRAINED}"
    assert p.table_parts("training") == []


def test_wildcard_constraints_come_from_the_spec_and_the_registry():
    c = plan.constraints()
    assert re.fullmatch(c["n"], "7") and not re.fullmatch(c["n"], "8")
    assert re.fullmatch(c["architecture"], "lenet300100")
    assert re.fullmatch(c["scale"], "1e-05") and not re.fullmatch(c["scale"], "x")
    path = plan.figure_path(5, *PAIR, "png")
    assert path == FIGURE.format(n=5, architecture=PAIR[0], dataset=PAIR[1], ext="png")


def test_the_spec_is_consistent_and_each_figure_has_a_caption():
    assert [f.number for f in SPEC] == list(range(1, len(SPEC) + 1))
    for fig in SPEC:
        assert fig.kind in ("line", "heatmap", "scatter")
        assert (ROOT / f"workflow/report/fig{fig.number}.rst").is_file()
    assert BY_NUMBER[2].trained and not BY_NUMBER[1].trained and BY_NUMBER[3].needs_kl
    with pytest.raises(ValueError, match="unknown table kinds"):
        Figure(8, "figure_8", "line", {"curvatur": None}, "a typo")


def test_plan_and_spec_import_without_torch_or_matplotlib():
    assert heavy_imports("goldilocks.plan", "goldilocks.figure_spec") == []


def test_readme_figure_list_agrees_with_the_spec():
    """README's table under "Figures and the report": one row per spec entry, its words
    (``message``), its tables (and scalings) and what it needs."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Figures and the report", 1)[1].split("\n## ", 1)[0]
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in section.splitlines()
        if re.match(r"\| \d+ \|", line)
    ]
    assert [int(r[0]) for r in rows] == [f.number for f in SPEC]
    for (_, what, drawn_from, needs), fig in zip(rows, SPEC, strict=True):
        assert what == fig.message, fig.number
        kinds, _, scalings = drawn_from.partition(" (")
        assert kinds.split(", ") == list(fig.tables), fig.number
        wanted = {s for v in fig.tables.values() if v for s in v}
        assert set(filter(None, scalings.rstrip(")").split(", "))) == wanted, fig.number
        if fig.needs_kl:
            assert "`variants`" in needs
        elif fig.trained:
            trained = fig.tables["training"]
            assert all(f"`{s}`" in needs for s in trained) if trained else "training" in needs
        else:
            assert needs == "(always)", fig.number


def test_small_alpha_table_only_with_joint_residual():
    p = _plan()
    assert p.small_alpha_tables() == ["results/small_alpha/lenet300100_synthetic.parquet"]
    assert p.small_alpha_cells[PAIR] == [("homogeneous", 0), ("residual", 0)]
    grids = p.small_alpha_grids("lenet300100")  # each variant's joint_residual alphas
    assert grids == {"homogeneous": [0.1, 1.0, 10.0], "residual": [0.1, 1.0, 10.0]}
    # joint_residual's part: residual's own cells and homogeneous's joint cells (m = k)
    part = {(c.variant, c.scaling) for c in p.cells_of("curvature", *PAIR, "joint_residual")}
    assert part == {("residual", "joint_residual"), ("homogeneous", "joint")}
    without = _plan("curvature: {scalings: [alpha, temperature, joint]}")
    assert without.small_alpha_tables() == [] and without.small_alpha_pairs == []


@pytest.mark.parametrize("name", ["config.yaml", "configs/study.yaml", "configs/paper.yaml"])
def test_training_grids_plan_the_zone_resolving_scales(name):
    """Every trained variant and scaling plans 7 evenly spaced scales around 1 (T every
    0.75 decade in [10^-2.25, 10^2.25], alpha every 0.25 in [10^-0.75, 10^0.75]; the
    LayerNorm variants' alpha like T) from the config, so a dry run shows them, and the
    inside/outside claims' one-density stretch holds them at that one step (the
    paper's base grid meets it at +-3 for L = 4, which joins the run)."""
    import math

    import numpy as np

    from goldilocks.zone import equal_density

    config = load_merged(name, ROOT)
    p = Plan(config)
    scales: dict = {}
    for c in p.train_cells:
        scales.setdefault((c.variant, c.scaling), set()).add(c.scale_value)
    assert {v for v, _ in scales} == set(config["variants"]) and len(scales) == 10
    for (variant, scaling), values in scales.items():
        step = 0.25 if scaling == "alpha" and variant not in ("layernorm", "combined") else 0.75
        around = [round(step * i, 6) for i in range(-3, 4)]
        exps = np.array(sorted(round(math.log10(s), 6) for s in values))
        assert set(around) <= set(exps), (variant, scaling, exps)
        near_one = np.abs(exps) <= 3 * step + 1e-9
        kept = exps[equal_density(10.0**exps, near_one & (np.abs(exps) <= step + 1e-9))]
        assert set(around) <= set(kept.tolist()), (variant, scaling, kept)
        assert np.allclose(np.diff(kept), step), (variant, scaling, kept)  # one density
