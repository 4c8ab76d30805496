"""Users' models from the config: registration, cells and the config checks (torch-free)."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from goldilocks.cells import curvature_cells, kl_variants, train_cells, variants_of
from goldilocks.config import ConfigError, check_config
from goldilocks.grid import alpha_and_temperature, lr_factor, scales_of
from goldilocks.registered import RegisteredDescription, locate_module, register_models
from goldilocks.variants import describe, variant_names

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
TINY = yaml.safe_load((ROOT / "configs/tiny.yaml").read_text())

MODELS = {
    "regmlp": {
        "factory": "json:loads",  # any importable module: registration never imports it
        "alpha_exempt": ["*norm*"],
        "variants": {
            "plain": {"depth": 2, "output_exponent": 2},
            "normed": {"depth": 2, "output_exponent": 1, "norm": True},
            "skipped": {"depth": 3, "residual_depth": 2, "output_exponent": 3, "skip": True},
        },
    }
}


def _config(models=MODELS, **changes):
    config = copy.deepcopy(TINY)
    config["models"] = copy.deepcopy(models)
    config["pairs"] = [
        {"architecture": "lenet300100", "dataset": "synthetic"},
        {"architecture": "regmlp", "dataset": "fmnist"},
    ]
    for path, value in changes.items():
        node = config
        *head, last = path.split(".")
        for key in head:
            node = node[key]
        node[last] = value
    return config


def test_models_register_with_their_declared_numbers():
    check_config(_config(), SCHEMA)
    d = describe("regmlp", "skipped")
    assert isinstance(d, RegisteredDescription)
    assert (d.depth, d.residual_depth, d.output_exponent) == (3, 2, 3)
    assert d.variant.skip and not d.variant.norm and d.small_alpha_exponent == 1
    assert d.factory == "json:loads"
    assert d.exempt(["fc.weight", "norm.weight", "layers.0.norm1.bias"]) == {
        "norm.weight",
        "layers.0.norm1.bias",
    }
    assert list(variant_names("regmlp")) == ["plain", "normed", "skipped"]
    # The built-ins are untouched.
    assert not isinstance(describe("lenet300100", "homogeneous"), RegisteredDescription)


def test_grids_and_rates_follow_the_declared_k():
    config = check_config(_config(), SCHEMA)
    scales = config["curvature"]["scales"]
    # k = 1 sweeps alpha_linear (times L = 2), k = 2 the alpha grid.
    assert scales_of(scales, "alpha", describe("regmlp", "normed")) == [0.01, 1.0, 100.0]
    assert scales_of(scales, "alpha", describe("regmlp", "plain")) == [0.1, 1.0, 10.0]
    assert alpha_and_temperature("joint", 10.0, "regmlp", "skipped") == (10.0, 1000.0)
    assert lr_factor("alpha", 10.0, "regmlp", "skipped") == pytest.approx(0.1)  # 10^(2-3)
    assert lr_factor("alpha", 10.0, "regmlp", "skipped", "residual_small_alpha") == 10.0


def test_a_models_variants_replace_the_global_ones_for_its_pairs():
    config = check_config(_config(), SCHEMA)
    assert variants_of(config, "regmlp") == ["plain", "normed", "skipped"]
    assert variants_of(config, "lenet300100") == ["homogeneous", "residual"]
    cells = curvature_cells(config)
    by_arch = {a: {c.variant for c in cells if c.architecture == a} for a in ("regmlp",)}
    assert by_arch["regmlp"] == {"plain", "normed", "skipped"}
    assert {c.variant for c in cells if c.architecture == "lenet300100"} == {
        "homogeneous",
        "residual",
    }
    assert {c.dataset for c in train_cells(config) if c.architecture == "regmlp"} == {"fmnist"}
    # Figure 3: LayerNorm variants with k = 1 only.
    assert kl_variants(config, "regmlp") == ["normed"]
    assert kl_variants(config, "lenet300100") == []


def test_a_config_of_registered_pairs_alone_needs_no_global_variants():
    config = _config()
    config["pairs"] = [{"architecture": "regmlp", "dataset": "cifar10"}]
    del config["variants"]
    check_config(config, SCHEMA)
    assert config["variants"] == ["homogeneous", "bias", "residual", "layernorm", "combined"]


NULL = {"depth": 2, "output_exponent": None}
BAD = [
    (
        "null k with joint",
        {"models": {"regmlp": {**MODELS["regmlp"], "variants": {"odd": NULL}}}},
        "config key models.regmlp.variants.odd.output_exponent: null (the logits follow no "
        "single power of alpha), but curvature.scalings has joint, which needs k (joint: "
        "T = alpha^k; alpha training: lr x alpha^(2-k)); declare k or drop joint from "
        "curvature.scalings",
    ),
    (
        "null k with alpha training",
        {
            "models": {"regmlp": {**MODELS["regmlp"], "variants": {"odd": NULL}}},
            "curvature.scalings": ["alpha", "temperature"],
            "training.scalings": ["temperature", "alpha"],
        },
        "config key models.regmlp.variants.odd.output_exponent: null (the logits follow no "
        "single power of alpha), but training.scalings has alpha, which needs k (joint: "
        "T = alpha^k; alpha training: lr x alpha^(2-k)); declare k or drop alpha from "
        "training.scalings",
    ),
    (
        "built-in name",
        {"models": {"lenet5": MODELS["regmlp"]}},
        "config key models.lenet5: 'lenet5' is a built-in architecture; pick another name",
    ),
    (
        "factory not found",
        {"models": {"regmlp": {**MODELS["regmlp"], "factory": "no_such_pkg.models:build"}}},
        "config key models.regmlp.factory: module 'no_such_pkg.models' of "
        "'no_such_pkg.models:build' not found (searched the working directory, the "
        "repository root and the installed packages)",
    ),
    (
        "residual depth beyond depth",
        {
            "models": {
                "regmlp": {
                    **MODELS["regmlp"],
                    "variants": {"x": {"depth": 2, "residual_depth": 3, "output_exponent": 2}},
                }
            }
        },
        "config key models.regmlp.variants.x.residual_depth: 3 exceeds depth 2 (𝓛 counts "
        "layers of the longest path)",
    ),
    (
        "unregistered architecture",
        {"pairs": [{"architecture": "vgg", "dataset": "fmnist"}]},
        "config key pairs[0].architecture: 'vgg' is neither a built-in architecture "
        "(lenet300100, lenet5, resnet4) nor a name under models",
    ),
]


@pytest.mark.parametrize(("changes", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_models_are_one_line_naming_the_key(changes, message):
    config = _config(**{k: v for k, v in changes.items() if k != "models"})
    if "models" in changes:
        config["models"] = changes["models"]
        config["pairs"] = [{"architecture": next(iter(changes["models"])), "dataset": "fmnist"}]
    with pytest.raises(ConfigError) as err:
        check_config(config, SCHEMA)
    assert str(err.value) == message


def test_null_k_is_fine_without_joint_or_alpha_training():
    models = {"regmlp": {**MODELS["regmlp"], "variants": {"odd": NULL}}}
    config = _config(models, **{"curvature.scalings": ["alpha", "temperature"]})
    check_config(config, SCHEMA)
    assert describe("regmlp", "odd").output_exponent is None
    # An unused model may declare null with joint in the config.
    config = _config(models)
    config["pairs"] = [{"architecture": "lenet300100", "dataset": "synthetic"}]
    check_config(config, SCHEMA)
    # Alpha training needs k only of the trained pairs (training.pairs).
    config = _config(
        models,
        **{"curvature.scalings": ["alpha", "temperature"], "training.scalings": ["alpha"]},
    )
    config["training"]["pairs"] = [{"architecture": "lenet300100", "dataset": "synthetic"}]
    check_config(config, SCHEMA)


@pytest.mark.parametrize(
    ("models", "key"),
    [
        ({"my_vit": MODELS["regmlp"]}, "models"),
        ({"regmlp": {**MODELS["regmlp"], "factory": "no colon"}}, "models.regmlp.factory"),
        ({"regmlp": {"factory": "json:loads"}}, "models.regmlp"),
        (
            {"regmlp": {**MODELS["regmlp"], "variants": {"v": {"depth": 2}}}},
            "models.regmlp.variants.v",
        ),
        (
            {"regmlp": {**MODELS["regmlp"], "variants": {"v": {**NULL, "width": 3}}}},
            "models.regmlp.variants.v.width",
        ),
    ],
)
def test_schema_refuses_malformed_models(models, key):
    with pytest.raises(ConfigError, match=rf"^config key {key.replace('.', '[.]')}[: ]"):
        check_config(_config(models), SCHEMA)


def test_locate_module_imports_nothing(tmp_path):
    """The config check finds a factory's module without running it or its parents."""
    pkg = tmp_path / "boompkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise RuntimeError('parent imported')\n")
    (pkg / "models.py").write_text("raise RuntimeError('module imported')\n")
    path = [str(tmp_path)]
    assert locate_module("boompkg.models", path)
    assert not locate_module("boompkg.other", path)
    assert not locate_module("nothere.models", path)
    assert "boompkg" not in sys.modules and "boompkg.models" not in sys.modules


def test_registration_imports_neither_torch_nor_the_factory():
    code = (
        "import sys, yaml\n"
        f"sys.path.insert(0, {str(ROOT / 'src')!r})\n"
        "from goldilocks.config import check_config\n"
        f"config = yaml.safe_load(open({str(ROOT / 'configs/vit.yaml')!r}))\n"
        f"schema = yaml.safe_load(open({str(ROOT / 'workflow/schemas/config.schema.yaml')!r}))\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "check_config(config, schema)\n"
        "from goldilocks.cells import curvature_cells\n"
        "print(len(curvature_cells(config)))\n"
        "print('torch' in sys.modules, 'examples.vit' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["84", "False", "False"]


def test_register_models_is_idempotent():
    config = _config()
    first = register_models(config)
    assert register_models(config) == first
