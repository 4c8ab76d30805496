"""Config validation in two layers, torch-free (runs whenever Snakemake parses).

1. The JSON schema (``workflow/schemas/config.schema.yaml``): types, enums, ranges,
   required keys; its defaults are filled in.
2. Semantic checks the schema cannot express: finite numbers (YAML's ``.nan`` and
   ``.inf`` pass a schema's ``number``), ``log10_min <= log10_max``, scales inside the
   float range, known architecture/dataset pairs, ``log_every <= epochs``, subsets and
   the curvature batch no larger than their split, trained pairs among the pairs, TF32
   not with curvature along training, mirrors that exist, and the users' models
   (``models``: names, factory modules, what a null output exponent rules out), which it
   registers (:mod:`goldilocks.registered`).

Every failure is one :class:`ConfigError` whose message names the key and the value.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from pathlib import Path

from goldilocks import registered
from goldilocks.cells import trained_pairs, variants_of
from goldilocks.variants import ARCHITECTURES, DATASET_SIZES, PAPER_PAIRS, depth

#: Largest |exponent| of a scale 10^e (times L with times_depth): float64 ends at 1.8e308.
MAX_EXPONENT = 300


class ConfigError(ValueError):
    """A bad config value; the message is one line naming the key."""


def _key(path) -> str:
    parts = []
    for p in path:
        parts.append(f"[{p}]" if isinstance(p, int) else f".{p}")
    return "".join(parts).lstrip(".") or "(top level)"


def _fill_defaults(instance, schema: Mapping, root: Mapping) -> None:
    if "$ref" in schema:
        node = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
    if not isinstance(instance, dict):
        return
    for name, sub in schema.get("properties", {}).items():
        if name not in instance and "default" in sub:
            instance[name] = copy.deepcopy(sub["default"])
        if name in instance:
            _fill_defaults(instance[name], sub, root)


def _check_schema(config: dict, schema: Mapping) -> None:
    import jsonschema

    validator = jsonschema.Draft7Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is None:
        return
    key = _key(error.absolute_path)
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        known = ", ".join(sorted(error.schema.get("properties", {})))
        raise ConfigError(
            f"config key {_key([*error.absolute_path, extra[0]])}: unknown key (given "
            f"{error.instance[extra[0]]!r}; known here: {known})"
        )
    if error.validator == "required":
        raise ConfigError(f"config key {key}: {error.message}")
    hint = ""
    if (
        error.validator == "type"
        and isinstance(error.instance, str)
        and _yaml_scalar(error.instance)
    ):
        hint = (
            "; a value nested in --config arrives as a string (Snakemake reads it so): "
            "put the key in a small YAML file and pass it with --configfile"
        )
    raise ConfigError(f"config key {key}: {error.instance!r} is invalid ({error.message}){hint}")


def _yaml_scalar(text: str) -> bool:
    """Whether ``text`` reads as a YAML number, boolean or null (not as a string)."""
    import yaml

    try:
        return not isinstance(yaml.safe_load(text), str)
    except yaml.YAMLError:
        return False


def _check_finite(node, path=()) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            _check_finite(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _check_finite(v, (*path, i))
    elif isinstance(node, float) and not math.isfinite(node):
        raise ConfigError(f"config key {_key(path)}: {node!r} is not a finite number")


def _check_models(config: Mapping) -> None:
    """The ``models`` section (docs/method.md section 3.5): names apart from the
    built-ins, ``L >= 𝓛``, factory modules that can be found (not imported), and no joint
    scaling or alpha training for a variant whose output exponent is null. Registers the
    models, so the checks after this one see them like built-ins."""
    models = config.get("models") or {}
    tr = config["training"]
    needs_k = []  # (key, scaling, architectures it reaches): what uses k = output_exponent
    if "joint" in config["curvature"]["scalings"]:
        needs_k.append(
            ("curvature.scalings", "joint", {p["architecture"] for p in config["pairs"]})
        )
    if tr.get("enabled", True) and "alpha" in tr["scalings"]:
        needs_k.append(("training.scalings", "alpha", {a for a, _ in trained_pairs(config)}))
    for name, spec in models.items():
        key = f"models.{name}"
        if name in ARCHITECTURES:
            raise ConfigError(
                f"config key {key}: {name!r} is a built-in architecture; pick another name"
            )
        module = spec["factory"].partition(":")[0]
        if not registered.locate_module(module):
            raise ConfigError(
                f"config key {key}.factory: module {module!r} of {spec['factory']!r} not "
                "found (searched the working directory, the repository root and the "
                "installed packages)"
            )
        for variant, numbers in spec["variants"].items():
            vkey = f"{key}.variants.{variant}"
            if numbers.get("residual_depth", 0) > numbers["depth"]:
                raise ConfigError(
                    f"config key {vkey}.residual_depth: {numbers['residual_depth']} exceeds "
                    f"depth {numbers['depth']} (𝓛 counts layers of the longest path)"
                )
            reached = [(where, scaling) for where, scaling, archs in needs_k if name in archs]
            if numbers["output_exponent"] is None and reached:
                where, scaling = reached[0]
                raise ConfigError(
                    f"config key {vkey}.output_exponent: null (the logits follow no single "
                    f"power of alpha), but {where} has {scaling}, which needs k (joint: "
                    f"T = alpha^k; alpha training: lr x alpha^(2-k)); declare k or drop "
                    f"{scaling} from {where}"
                )
    registered.register_models(config)


def _check_pairs(config: Mapping) -> None:
    known = (*ARCHITECTURES, *(config.get("models") or {}))
    for i, pair in enumerate(config["pairs"]):
        combo = (pair["architecture"], pair["dataset"])
        if combo[0] not in known:
            raise ConfigError(
                f"config key pairs[{i}].architecture: {combo[0]!r} is neither a built-in "
                f"architecture ({', '.join(ARCHITECTURES)}) nor a name under models"
            )
        if combo[0] in (config.get("models") or {}):
            continue  # a registered model runs on every dataset
        if pair["dataset"] != "synthetic" and combo not in PAPER_PAIRS:
            paper = ", ".join(f"{a}/{d}" for a, d in PAPER_PAIRS)
            raise ConfigError(
                f"config key pairs[{i}]: {combo[0]}/{combo[1]} is not a known pair "
                f"(known: {paper}, or any architecture with synthetic)"
            )


def _check_grid(config: Mapping, key: str, grid: Mapping) -> None:
    """One scale grid spec (and its ``refine`` stretch): ordered, non-empty, inside the
    float range (times L)."""
    if grid["log10_min"] > grid["log10_max"]:
        raise ConfigError(
            f"config key {key}: log10_min {grid['log10_min']} exceeds log10_max {grid['log10_max']}"
        )
    depths = [
        depth(p["architecture"], v).depth
        for p in config["pairs"]
        for v in variants_of(config, p["architecture"])
    ]
    factor = max(depths) if grid.get("times_depth") else 1
    for end in ("log10_min", "log10_max"):
        if abs(grid[end] * factor) > MAX_EXPONENT:
            raise ConfigError(
                f"config key {key}.{end}: {grid[end]} gives 10^{grid[end] * factor:g} (times "
                f"L = {factor}), outside the float range (|exponent| <= {MAX_EXPONENT})"
            )
    if grid["num"] > 1 and grid["log10_min"] == grid["log10_max"]:
        raise ConfigError(
            f"config key {key}: num {grid['num']} points on an empty range "
            f"[{grid['log10_min']}, {grid['log10_max']}]"
        )
    if grid.get("refine"):
        _check_grid(config, f"{key}.refine", grid["refine"])


def _check_training(config: Mapping) -> None:
    tr = config["training"]
    if tr["log_every"] > tr["epochs"]:
        raise ConfigError(
            f"config key training.log_every: {tr['log_every']} exceeds "
            f"training.epochs {tr['epochs']}"
        )
    every = tr["curvature_every"]
    if every and every % tr["log_every"]:
        raise ConfigError(
            f"config key training.curvature_every: {every} is not a multiple of "
            f"training.log_every {tr['log_every']}"
        )
    if tr["tf32"] and every:
        raise ConfigError(
            f"config key training.tf32: true with training.curvature_every {every}: "
            "curvature along training must be strict FP32; set one of them off"
        )
    names = [(p["architecture"], p["dataset"]) for p in config["pairs"]]
    for i, pair in enumerate(tr.get("pairs") or []):
        if (pair["architecture"], pair["dataset"]) not in names:
            listed = ", ".join(f"{a}/{d}" for a, d in names)
            raise ConfigError(
                f"config key training.pairs[{i}]: {pair['architecture']}/{pair['dataset']} "
                f"is not one of pairs ({listed})"
            )
    if tr.get("enabled", True):  # the subsets of the trained pairs' datasets only
        trained = {dataset for _, dataset in trained_pairs(config)}
        for key, split in (("train_subset", 0), ("test_subset", 1)):
            _check_within_split(trained, f"training.{key}", tr.get(key), split)


def _check_within_split(datasets, key: str, images, split: int) -> None:
    """``images`` (a subset or batch; None or 0: none set) at most the ``split``
    (0 training, 1 test) of each of ``datasets``."""
    for dataset in sorted(datasets):
        size = DATASET_SIZES[dataset][split]
        if images and images > size:
            raise ConfigError(
                f"config key {key}: {images} exceeds the {size} images of "
                f"{dataset}'s {('training', 'test')[split]} split"
            )


def _check_semantics(config: Mapping, schema: Mapping) -> None:
    _check_models(config)
    _check_pairs(config)
    datasets = {p["dataset"] for p in config["pairs"]}
    _check_within_split(datasets, "curvature.batch_size", config["curvature"]["batch_size"], 0)
    for stage in ("curvature", "training"):
        for name, grid in config[stage]["scales"].items():
            _check_grid(config, f"{stage}.scales.{name}", grid)
    _check_training(config)
    # the default mirrors (Debian's dataset packages) may be absent: then torchvision downloads
    defaults = schema["properties"]["data"]["properties"]["mirrors"]["default"]
    for mirror in config["data"]["mirrors"]:
        if mirror not in defaults and not Path(mirror).is_dir():
            raise ConfigError(f"config key data.mirrors: folder {mirror!r} does not exist")


#: What changing a key reruns (its schema entry's ``x-rerun``; docs/method.md section 9.4).
RERUN_CLASSES = {
    "result": "reruns the cells of its stages whose numbers it can change, rounding included",
    "execution": "reruns nothing",
    "presentation": "reruns only tables, figures and claims",
}
#: The stages, in order: each a rule (or rules) of workflow/rules/.
STAGES = ("data", "init", "curvature", "kl", "small_alpha", "train", "tables", "figures", "claims")


def _resolve(node: Mapping, root: Mapping) -> Mapping:
    if "$ref" in node:
        target = root
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def rerun_classes(schema: Mapping) -> dict[str, dict | None]:
    """Every key of ``schema`` (dotted) with the ``x-rerun`` entry that applies to it: its
    own, else its nearest parent's (a class on ``claims`` covers every claims key); None
    where neither has one. A section without its own entry (``data``, ``training``) is not
    listed, its keys are; nor are keys under ``models`` (names the user picks)."""
    found: dict[str, dict | None] = {}

    def walk(node: Mapping, prefix: str, inherited: dict | None) -> None:
        for name, sub in node.get("properties", {}).items():
            sub = _resolve(sub, schema)
            key = f"{prefix}{name}"
            own = sub.get("x-rerun", inherited)
            if own is not None or "properties" not in sub:  # sections hold classed keys
                found[key] = own
            walk(sub, f"{key}.", own)

    walk(schema, "", None)
    return found


def rerun_table(schema: Mapping) -> str:
    """The Markdown table of every key's rerun class (docs/method.md section 9.4 holds it;
    tests/test_config.py checks that it matches)."""
    rows = ["| key | class | stages it reruns | condition |", "|---|---|---|---|"]
    classes = rerun_classes(schema)
    for key, rerun in classes.items():
        parent = key.rpartition(".")[0]
        if parent in classes and classes[parent] is rerun:
            continue  # covered by its parent's row
        rerun = rerun or {}
        stages = ", ".join(rerun.get("stages", [])) or "-"
        if rerun.get("grid"):
            stages += " (grid)"
        when = "; ".join(f"{stage}: {cond}" for stage, cond in rerun.get("when", {}).items())
        rows.append(f"| `{key}` | {rerun.get('class', '?')} | {stages} | {when or '-'} |")
    return "\n".join(rows) + "\n"


def load_merged(path: str | Path, root: str | Path) -> dict:
    """``root``'s config.yaml with the YAML file ``path`` (relative to ``root`` unless
    absolute) merged over it as Snakemake merges ``--configfile``, validated against
    ``root``'s schema (defaults filled in): the config a run with that file gets."""
    import yaml
    from snakemake.utils import update_config

    root = Path(root)
    config = yaml.safe_load((root / "config.yaml").read_text())
    update_config(config, yaml.safe_load((root / path).read_text()))
    schema = yaml.safe_load((root / "workflow" / "schemas" / "config.schema.yaml").read_text())
    return check_config(config, schema)


def check_config(config: dict, schema: Mapping) -> dict:
    """Validate ``config`` in place against ``schema`` and the semantic rules.

    Fills the schema's defaults, then checks. Returns the same dict.

    Raises:
        ConfigError: the first problem found, as one line naming the key.
    """
    if not isinstance(config, dict) or not config:
        raise ConfigError("config: empty; run from the repository root or pass --configfile")
    _fill_defaults(config, schema, schema)
    _check_finite(config)
    _check_schema(config, schema)
    _check_semantics(config, schema)
    return config
