"""Config validation: every bad value is refused with one line that names the key."""

import copy
from pathlib import Path

import pytest
import yaml

from goldilocks.config import (
    RERUN_CLASSES,
    STAGES,
    ConfigError,
    check_config,
    load_merged,
    rerun_classes,
    rerun_table,
)

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
BASE = yaml.safe_load((ROOT / "config.yaml").read_text())


def _with(path: str, value):
    config = copy.deepcopy(BASE)
    node = config
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if key.isdigit() else node[key]
    last = keys[-1]
    if value is _DELETE:
        del node[last]
    else:
        node[int(last) if last.isdigit() else last] = value
    return config


_DELETE = object()

BAD = [
    ("pairs.0.architecture", "vgg16", "pairs[0].architecture"),
    ("pairs.0.dataset", "mnist", "pairs[0].dataset"),
    ("variants", ["homogeneous", "batchnorm"], "variants[1]"),
    ("variants", [], "variants"),
    ("curvature.scalings", ["alpha", "sigma"], "curvature.scalings[1]"),
    ("training.scalings", ["joint"], "training.scalings[0]"),
    ("seeds", [-1], "seeds[0]"),
    ("training.lr_base", [0.1, -0.5], "training.lr_base[1]"),
    ("training.epochs", "many", "training.epochs"),
    ("curvature.dtype", "float16", "curvature.dtype"),
    ("curvature.scales.temperature.num", 0, "curvature.scales.temperature.num"),
    ("curvature.scales.alpha.log10_min", 5, "curvature.scales.alpha"),
    ("training.scales.temperature.extra", [-1.0], "training.scales.temperature.extra[0]"),
    ("curvature.subspace_dm", 50, "curvature.subspace_dm"),
    ("training.epochs", _DELETE, "training"),
    ("device", "tpu", "device"),
    ("data.mirrors", ["/no/such/folder"], "data.mirrors"),
    ("pairs", [{"architecture": "lenet300100", "dataset": "cifar10"}], "pairs[0]"),
    ("training.log_every", 1000, "training.log_every"),
    ("figures.zone_threshold", 1.5, "figures.zone_threshold"),
    ("training.curvature_every", 3, "training.curvature_every"),
    # Non-finite numbers pass the schema's `number` (YAML .nan, .inf).
    ("training.lr_base", [0.1, float("nan")], "training.lr_base[1]"),
    ("curvature.scales.alpha.log10_max", float("inf"), "curvature.scales.alpha.log10_max"),
    ("figures.zone_threshold", float("nan"), "figures.zone_threshold"),
    # Scales outside the float range (times L = 4 for residual LeNet-300-100).
    ("curvature.scales.temperature.log10_max", 80, "curvature.scales.temperature.log10_max"),
    ("training.scales.alpha.log10_min", -400, "training.scales.alpha.log10_min"),
    ("training.scales.temperature.log10_min", 5, "training.scales.temperature"),
    ("training.scales.alpha.num", 0, "training.scales.alpha.num"),
    ("curvature.scales.alpha.extra", [0.0], "curvature.scales.alpha.extra[0]"),
    ("training.lr_base", [], "training.lr_base"),
    ("pairs", [], "pairs"),
    ("seeds", [], "seeds"),
    ("training.seeds", [0, 0], "training.seeds"),
    ("training.checkpoint_every", 0, "training.checkpoint_every"),
    ("training.train_subset", 0, "training.train_subset"),
    ("epochs", 10, "epochs"),  # a training key at the top level
    ("curvature.hvp_method", "forward", "curvature.hvp_method"),
    ("curvature.jvp_method", "reverse", "curvature.jvp_method"),
    # A subset larger than its split (Fashion-MNIST: 60,000 / 10,000 images).
    ("training.train_subset", 60_001, "training.train_subset"),
    ("training.test_subset", 10_001, "training.test_subset"),
    ("curvature.batch_size", 60_001, "curvature.batch_size"),
    ("training.scalings", ["joint_residual"], "training.scalings[0]"),
    ("claims.flat_spread", -0.1, "claims.flat_spread"),
    ("claims.flat_sprad", 0.1, "claims.flat_sprad"),
    ("training.chunk_size", "big", "training.chunk_size"),
    ("training.chunk_size", 0, "training.chunk_size"),
    ("training.batch_cells", 0, "training.batch_cells"),
    ("training.batch_wait", -1, "training.batch_wait"),
    ("training.tf32", "yes", "training.tf32"),
    # A trained pair must be one of pairs (the quick default: lenet300100/fmnist).
    ("training.pairs", [{"architecture": "lenet5", "dataset": "cifar10"}], "training.pairs[0]"),
    ("training.pairs", [], "training.pairs"),
    # Values the schema used to pass that cannot work: no epoch to train (was refused as
    # log_every), one alpha (figure 3 drew no curve).
    ("training.epochs", 0, "training.epochs"),
    ("figures.kl_num", 1, "figures.kl_num"),
]


@pytest.mark.parametrize(("path", "value", "key"), BAD, ids=[f"{b[0]}={b[1]!r}" for b in BAD])
def test_bad_config_is_one_line_naming_the_key(path, value, key):
    with pytest.raises(ConfigError) as err:
        check_config(_with(path, value), SCHEMA)
    message = str(err.value)
    assert "\n" not in message
    assert f"config key {key}" in message
    if not isinstance(value, (list, dict)) and value is not _DELETE:
        assert repr(value) in message or str(value) in message  # names the value too


def test_quick_default_is_valid_and_gets_defaults():
    config = check_config(copy.deepcopy(BASE), SCHEMA)
    assert config["curvature"]["batch_size"] == 128
    assert config["data"]["download"] is True


@pytest.mark.parametrize("name", ["paper", "extended"])
def test_paper_configs_are_valid(name):
    paper = yaml.safe_load((ROOT / f"configs/{name}.yaml").read_text())
    merged = copy.deepcopy(BASE)
    merged.update(paper)
    check_config(merged, SCHEMA)


def test_execution_settings_chunk_auto_and_trained_pairs():
    config = check_config(copy.deepcopy(BASE), SCHEMA)
    tr = config["training"]
    assert (tr["batch_cells"], tr["batch_wait"], tr["tf32"], tr["pairs"]) == (1, 5, False, None)
    config = _with("training.chunk_size", "auto")
    config["training"]["pairs"] = [{"architecture": "lenet300100", "dataset": "fmnist"}]
    check_config(config, SCHEMA)


def test_training_subsets_are_checked_against_the_trained_datasets_only():
    """A subset larger than an untrained pair's split is fine (training.pairs leaves it
    out, or training is off): no cell of it draws that subset."""
    config = _with("training.train_subset", 2000)  # synthetic has 1,024 training images
    config["pairs"].append({"architecture": "lenet300100", "dataset": "synthetic"})
    config["training"]["pairs"] = [{"architecture": "lenet300100", "dataset": "fmnist"}]
    check_config(copy.deepcopy(config), SCHEMA)
    config["training"]["pairs"] = None  # every pair trained: synthetic's split is too small
    with pytest.raises(ConfigError, match=r"^config key training.train_subset: 2000 exceeds"):
        check_config(copy.deepcopy(config), SCHEMA)
    config["training"]["enabled"] = False
    check_config(config, SCHEMA)


def test_tf32_with_curvature_along_training_is_refused():
    config = _with("training.tf32", True)
    config["training"]["curvature_every"] = config["training"]["log_every"]
    with pytest.raises(ConfigError, match=r"^config key training.tf32: true with training.curv"):
        check_config(config, SCHEMA)


def test_claims_defaults_in_the_schema_are_the_modules():
    from goldilocks.claims import DEFAULT_THRESHOLDS

    config = check_config(copy.deepcopy(BASE), SCHEMA)
    assert config["claims"] == DEFAULT_THRESHOLDS


def test_a_nested_command_line_value_read_as_a_string_gets_the_configfile_hint():
    """Snakemake reads values nested in --config (training={epochs: 5}) as strings."""
    with pytest.raises(ConfigError) as err:
        check_config(_with("training.epochs", "5"), SCHEMA)
    assert "config key training.epochs: '5' is invalid" in str(err.value)
    assert "pass it with --configfile" in str(err.value)
    with pytest.raises(ConfigError) as err:  # a real string gets no such hint
        check_config(_with("training.epochs", "five"), SCHEMA)
    assert "--configfile" not in str(err.value)


def test_load_merged_is_config_yaml_with_the_file_over_it(tmp_path):
    """What the benchmarks read: a partial file keeps config.yaml's other values; a path
    may be absolute; config.yaml over itself is config.yaml."""
    part = tmp_path / "part.yaml"
    part.write_text("seeds: [7]\ntraining:\n  epochs: 40\n")
    merged = load_merged(part, ROOT)
    plain = load_merged("config.yaml", ROOT)
    assert merged["seeds"] == [7] and merged["training"]["epochs"] == 40
    assert merged["training"]["lr_base"] == plain["training"]["lr_base"]
    assert merged["curvature"] == plain["curvature"]
    assert plain == check_config(yaml.safe_load((ROOT / "config.yaml").read_text()), SCHEMA)


def test_schema_choices_are_the_codes_own():
    """Every choice the schema lists is the code's list of the same thing (one source
    each: a value added to the code but not the schema would be refused, and the other
    way round reach code that has no branch for it)."""
    from goldilocks import claims, grid, variants
    from goldilocks.curvature import HVP_METHODS, JVP_METHODS
    from goldilocks.runtime import DTYPES

    props = SCHEMA["properties"]
    assert SCHEMA["definitions"]["dtype"]["enum"] == list(DTYPES)
    assert SCHEMA["definitions"]["pair"]["properties"]["dataset"]["enum"] == list(variants.DATASETS)
    assert props["variants"]["items"]["enum"] == list(variants.VARIANTS)
    assert props["variants"]["items"]["enum"] == list(claims.VARIANTS)  # the claims' names
    curvature, training = props["curvature"]["properties"], props["training"]["properties"]
    assert curvature["scalings"]["items"]["enum"] == list(grid.SCALINGS)
    assert set(training["scalings"]["items"]["enum"]) == set(claims.TRAIN_SCALINGS)
    assert curvature["hvp_method"]["enum"] == ["auto", *HVP_METHODS]
    assert curvature["jvp_method"]["enum"] == ["auto", *JVP_METHODS]
    assert training["alpha_lr_rule"]["enum"] == list(grid.ALPHA_LR_RULES)


# The rerun classes (docs/method.md section 9.4).
CLASSES = rerun_classes(SCHEMA)
# Each rule of workflow/rules/ and its stage.
RULE_STAGES = {
    "data": "data",
    "model_spec": "init",
    "init": "init",
    "curvature": "curvature",
    "kl": "kl",
    "small_alpha": "small_alpha",
    "train": "train",
    "aggregate_curvature": "tables",
    "aggregate_training": "tables",
    "tables": "tables",
    "figure_{n}": "figures",
    "fig{n}": "figures",
    "claims": "claims",
}
PRESENTATION_STAGES = {"tables", "figures", "claims"}


def test_every_schema_key_has_a_rerun_class():
    assert len(CLASSES) > 50  # every key, sections' keys included
    unclassed = [key for key, rerun in CLASSES.items() if rerun is None]
    assert unclassed == []
    for key, rerun in CLASSES.items():
        assert rerun["class"] in RERUN_CLASSES, key
        assert set(rerun) <= {"class", "stages", "when", "grid"}, key
        assert set(rerun.get("stages", [])) <= set(STAGES), key
        assert set(rerun.get("when", {})) <= set(rerun.get("stages", [])), key
        if rerun["class"] == "execution":
            assert "stages" not in rerun, key
        elif rerun["class"] == "presentation":
            assert set(rerun["stages"]) <= PRESENTATION_STAGES, key
        else:
            assert rerun["stages"], key


def test_method_md_key_table_is_the_schemas():
    method = (ROOT / "docs/method.md").read_text()
    begin, end = "<!-- rerun table: begin -->\n", "<!-- rerun table: end -->"
    assert method.count(begin) == 1 and method.count(end) == 1
    shown = method.split(begin)[1].split(end)[0]
    assert shown == rerun_table(SCHEMA), "regenerate it: goldilocks.config.rerun_table"


def _blocks(text: str):
    """(rule name, params text) of every rule in a rule file."""
    import re

    rules = re.split(r"^( *)rule ?(\w*):\n", text, flags=re.M)
    for indent, name, body in zip(rules[1::3], rules[2::3], rules[3::3], strict=True):
        if not name:  # a rule named by a `name:` directive (figure_{n}, fig{n})
            name = re.search(r"name:\s*f\"([^\"]+)\"", body).group(1)
        m = re.search(rf"^{indent}    params:\n((?:{indent}        .*\n)+)", body, re.M)
        yield re.sub(r"\{[^}]*\}", "{n}", name), m.group(1) if m else ""  # figure_{n}


def _definitions(text: str) -> dict[str, str]:
    """Top-level functions and constants of the rule files: name -> source."""
    import re

    found = {}
    for m in re.finditer(r"^(?:def (\w+)\(|([A-Z_]+) =)(.*\n(?:[ )\]}].*\n|\n)*)", text, re.M):
        found[m.group(1) or m.group(2)] = m.group(0)
    return found


def _config_keys(source: str, definitions: dict[str, str], seen: set) -> set[str]:
    """The config keys ``source`` reads (config["a"]["b"] -> a.b), through the rule files'
    own functions and constants it names."""
    import re

    keys = {
        ".".join(re.findall(r'\["(\w+)"\]', m))
        for m in re.findall(r'config((?:\["\w+"\])+)', source)
    }
    for name in set(re.findall(r"\b([A-Za-z_]\w*)\b", source)) & set(definitions) - seen:
        seen.add(name)
        keys |= _config_keys(definitions[name], definitions, seen)
    return keys


def _class_of(key: str) -> dict:
    """The rerun class of a key or of the nearest listed parent of a key under it."""
    while key not in CLASSES:
        key = key.rpartition(".")[0]
        assert key, "a config key the schema does not have"
    return CLASSES[key]


def test_every_rule_param_is_a_result_key_of_its_stage():
    """Params are a rerun trigger: a rule's params may read only result keys of its stage
    (presentation keys in the presentation stages), never an execution key."""
    files = sorted((ROOT / "workflow/rules").glob("*.smk"))
    text = "\n".join(f.read_text() for f in files)
    definitions = _definitions(text)
    checked = {}
    for path in files:
        for rule, params in _blocks(path.read_text()):
            stage = RULE_STAGES[rule]  # a new rule needs its stage here
            for key in _config_keys(params, definitions, set()):
                rerun = _class_of(key)
                if rerun["class"] == "presentation":
                    allowed = stage in PRESENTATION_STAGES
                else:
                    allowed = rerun["class"] == "result" and stage in rerun["stages"]
                assert allowed, f"rule {rule} ({stage}): param reads {key}, {rerun}"
                checked.setdefault(rule, set()).add(key)
    assert set(checked) >= {"init", "curvature", "kl", "train", "aggregate_curvature", "claims"}
    assert {"training.epochs", "training.tf32", "curvature.hvp_method"} <= checked["train"]
    assert not any(key.startswith("data.") for keys in checked.values() for key in keys)
