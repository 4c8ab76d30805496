"""The plan of ``workflow/slurm_batched.py`` (README, "On a cluster"): its settings, what
is due, and the allocations that run it. Torch-free and without SLURM: the script keeps
the I/O (the dry run of Snakemake, sbatch, squeue, scancel, signals).

1. ``before``: one allocation builds the due outputs of the rules the cells read (data,
   init files), so that no two slices ever write the same file;
2. ``cells``: for each cell rule (curvature, train) its due cells in slices of at most
   ``cells_per_slice``, one allocation each, all submitted at once;
3. ``after``: one allocation runs what is left of the targets (aggregates, figures).

The settings (``profiles/slurm-batched/sbatch.yaml``) are checked against the JSON schema
``workflow/schemas/sbatch.schema.yaml``; every failure is one line naming the file and
the key.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

#: ``before.rules`` when the settings name none: what the cell rules read (a slice, allowed
#: only its cell rule, cannot build them).
BEFORE_RULES = ("data", "model_spec", "init")


class DriverError(Exception):
    """Bad settings or a state the driver cannot run from; printed as one line."""


@dataclass(frozen=True)
class Allocation:
    """One sbatch: a Snakemake run over ``targets`` (all of them when empty)."""

    name: str
    targets: tuple[str, ...]
    cpus: int
    mem_mb: int
    minutes: int
    allowed_rules: tuple[str, ...] = ()
    sbatch_extra: tuple[str, ...] = ()
    snakemake_extra: tuple[str, ...] = ()


# --- settings ---------------------------------------------------------------------------


def load_settings(path: Path, schema_file: Path) -> dict:
    """The sbatch settings file ``path``, checked against the JSON schema in
    ``schema_file``.

    Raises:
        DriverError: one line naming ``path`` and the first bad key.
    """
    try:
        settings = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise DriverError(f"cannot read settings {path}: {err}") from err
    schema = yaml.safe_load(Path(schema_file).read_text())
    problem = settings_error(settings, schema)
    if problem:
        raise DriverError(f"{path}: {problem}")
    return settings


def settings_error(settings, schema: Mapping) -> str | None:
    """The first way ``settings`` breaks ``schema``, as ``key: what is wrong``; None if
    it fits. Integers are Python ints (``2.0`` is no CPU count), as are booleans not."""
    import jsonschema

    integer = jsonschema.Draft7Validator.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)
    )
    validator = jsonschema.validators.extend(jsonschema.Draft7Validator, type_checker=integer)
    errors = validator(schema).iter_errors(settings)
    errors = sorted(errors, key=lambda e: [str(p) for p in e.absolute_path])
    if not errors:
        return None
    error = errors[0]
    key = ".".join(map(str, error.absolute_path))
    where = f"{key}: " if key else ""
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))[0]
        return f"{where}unknown key {unknown!r} (allowed: {', '.join(allowed)})"
    if error.validator == "required":
        return f"{where}{error.message}"
    expected = error.schema.get("x-expected", error.message)
    return f"{where}expected {expected}, got {error.instance!r}"


def before_rules(settings: dict):
    """The rules of the ``before`` allocation: ``before.rules``, or :data:`BEFORE_RULES`
    when the settings leave it out (or ``before`` empty)."""
    rules = (settings.get("before") or {}).get("rules")
    return BEFORE_RULES if rules is None else rules


# --- what is due: a dry run of Snakemake ------------------------------------------------

_JOB = re.compile(r"^(?:local)?rule (\S+):$")
_OUTPUT = re.compile(r"^\s+output: (.*)$")
_STATS = re.compile(r"^Job stats:\n.*?\n-+\s+-+\n(.*?)\n\s*\n", re.S | re.M)


def due_jobs(dry_run_output: str, with_outputs=()) -> dict[str, list[tuple[str, ...]]]:
    """The jobs a dry run lists, by rule: each job as the tuple of its output files.

    Parses Snakemake's job blocks (``rule NAME:`` then ``    output: a, b``) and checks
    them against the ``Job stats`` table: as many blocks per rule as it counts, an output
    line in every block or in none (a rule without outputs, like ``all``), and one in
    every block of the rules ``with_outputs``. A change of Snakemake's output format thus
    fails here loudly instead of submitting a wrong slice.
    """
    blocks: dict[str, int] = {}
    jobs: dict[str, list[tuple[str, ...]]] = {}
    rule = None
    for line in dry_run_output.splitlines():
        if m := _JOB.match(line):
            rule = m[1]
            blocks[rule] = blocks.get(rule, 0) + 1
            jobs.setdefault(rule, [])
        elif rule is not None and (m := _OUTPUT.match(line)):
            jobs[rule].append(tuple(m[1].split(", ")))
            rule = None
        elif not line.strip():
            rule = None
    stats = _STATS.search(dry_run_output)
    counts = {}
    if stats:
        for row in stats[1].splitlines():
            name, count = row.split()
            if name != "total":
                counts[name] = int(count)
    outputs = {r: len(j) for r, j in jobs.items()}
    wrong = (
        blocks != counts
        or any(outputs[r] not in (0, blocks[r]) for r in blocks)
        or any(r in blocks and outputs[r] != blocks[r] for r in with_outputs)
    )
    if wrong:
        raise DriverError(
            f"could not read the dry run of Snakemake (job blocks {blocks}, with outputs "
            f"{outputs}, job stats {counts}); rerun with --dry-run and check its output"
        )
    return {r: j for r, j in jobs.items() if j}


# --- the plan ---------------------------------------------------------------------------


def split(items: list, size: int) -> list[list]:
    """``items`` in ceil(len / size) consecutive slices of nearly equal length."""
    if not items:
        return []
    n = math.ceil(len(items) / size)
    base, extra = divmod(len(items), n)
    slices, start = [], 0
    for i in range(n):
        stop = start + base + (1 if i < extra else 0)
        slices.append(items[start:stop])
        start = stop
    return slices


def plan(settings: dict, jobs: dict[str, list[tuple[str, ...]]]) -> dict[str, list[Allocation]]:
    """The allocations of each stage (``before``, ``cells``, ``after``) for these due jobs.

    A cell slice's time limit is ``startup_minutes`` plus its cells' minutes shared by its
    CPUs (cells run side by side, one thread each). Stages with nothing due are empty.
    """
    startup = settings.get("startup_minutes", 3)
    common = tuple(settings.get("sbatch_extra") or ())
    before = settings.get("before") or {}
    first = tuple(before_rules(settings))
    cells = settings["cells"]
    stages: dict[str, list[Allocation]] = {"before": [], "cells": [], "after": []}

    due_before = [f for r in first for job in jobs.get(r, []) for f in job]
    if due_before:
        stages["before"].append(_allocation("before", tuple(due_before), before, common, first))
    for rule, spec in cells.items():
        spec = spec or {}  # a rule listed with no settings: the defaults
        slices = split(jobs.get(rule, []), spec.get("cells_per_slice", 100))
        for i, part in enumerate(slices, 1):
            cpus = spec.get("cpus", 1)
            minutes = startup + math.ceil(spec.get("minutes_per_cell", 1) * len(part) / cpus)
            name = f"{rule}-{i}of{len(slices)}"
            targets = tuple(f for job in part for f in job)
            stages["cells"].append(
                _allocation(name, targets, {**spec, "minutes": minutes}, common, (rule,))
            )
    rest = set(jobs) - set(first) - set(cells)
    if rest:
        stages["after"].append(_allocation("after", (), settings.get("after") or {}, common))
    return stages


def _allocation(name, targets, spec, common, allowed=()) -> Allocation:
    return Allocation(
        name=name,
        targets=targets,
        cpus=spec.get("cpus", 1),
        mem_mb=spec.get("mem_mb", 4000),
        minutes=spec.get("minutes", 60),
        allowed_rules=tuple(allowed) or tuple(spec.get("rules", ())),
        sbatch_extra=(*common, *map(str, spec.get("sbatch_extra") or ())),
        snakemake_extra=tuple(map(str, spec.get("snakemake_extra") or ())),
    )
