"""Run the grid on SLURM with the cells of each allocation as threads of ONE Snakemake.

``profiles/slurm`` hands every job to the SLURM executor plugin; inside an allocation the
plugin's jobstep executor starts one ``srun python -m snakemake`` per cell (10-20 s of
start-up and ``import torch`` each, for well under a second of curvature compute). No
setting of the plugins changes that (README, "On a cluster"). This driver submits a few
allocations instead, each running Snakemake in the local threaded mode of
``profiles/slurm-batched/config.yaml`` (jobs as threads, torch imported once) over a
slice of the due cells:

1. ``before``: one allocation builds the due outputs of the rules the cells read (data,
   init files), so that no two slices ever write the same file;
2. ``cells``: for each cell rule (curvature, train) its due cells in slices of at most
   ``cells_per_slice``, one allocation each, all submitted at once;
3. ``after``: one allocation runs what is left of the targets (aggregates, figures).

What is due comes from a dry run of Snakemake with the same profile, so a rerun after a
cancelled, failed or timed-out allocation submits only the cells not yet finished (cell
files are written atomically: a file under its final name is complete). Each allocation
runs ``snakemake --nolock``: Snakemake's lock would survive an allocation that SLURM
kills (time limit, ``scancel`` after its grace period) and block the rerun; instead the
driver makes the slices' outputs disjoint, lets a slice run only its cell rule
(``--allowed-rules``), and refuses to start while an earlier run's allocations are still
queued or while Snakemake locks exist in the folder. Sbatch settings per stage live in
``profiles/slurm-batched/sbatch.yaml``.

    python workflow/slurm_batched.py [targets ...] [--configfile FILE ...]
        [--config KEY=VALUE ...] [--directory DIR] [--settings YAML] [--dry-run]

Exits 0 when every allocation completed; otherwise 1 after all submitted allocations
ended, naming each failed one with its SLURM state (TIMEOUT, CANCELLED, FAILED,
OUT_OF_MEMORY) and log. Ctrl-C (SIGINT) or SIGTERM cancels the run's allocations.
"""

from __future__ import annotations

import argparse
import math
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "profiles" / "slurm-batched"
SETTINGS = PROFILE / "sbatch.yaml"
# Where a run keeps its batch scripts and SLURM logs, and the ids of its live jobs.
STATE = Path(".snakemake") / "slurm_batched"
ACTIVE = STATE / "active_jobs"
# Per allocation: the sbatch keys a stage may set, and their meaning.
#: ``before.rules`` when the settings name none: what the cell rules read (a slice, allowed
#: only its cell rule, cannot build them).
BEFORE_RULES = ("data", "model_spec", "init")
ALLOCATION_KEYS = {"cpus", "mem_mb", "minutes", "sbatch_extra", "snakemake_extra"}
CELL_KEYS = (ALLOCATION_KEYS - {"minutes"}) | {"cells_per_slice", "minutes_per_cell"}
TOP_KEYS = {
    "partition",
    "account",
    "sbatch_extra",
    "startup_minutes",
    "poll_seconds",
    "before",
    "cells",
    "after",
}


# SLURM's job states after which a job runs no more (squeue %T).
FINAL_STATES = {
    "BOOT_FAIL",
    "CANCELLED",
    "COMPLETED",
    "DEADLINE",
    "FAILED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "TIMEOUT",
}


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


@dataclass
class Submitted:
    """A submitted allocation: its SLURM job id, its log and, once ended, its state."""

    allocation: Allocation
    job_id: str
    log: Path
    state: str = ""
    seconds: float | None = None


# --- settings ---------------------------------------------------------------------------


def load_settings(path: Path) -> dict:
    """The sbatch settings file, checked key by key (one-line errors naming the key)."""
    try:
        settings = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise DriverError(f"cannot read settings {path}: {err}") from err
    if not isinstance(settings, dict):
        raise DriverError(f"{path}: expected a mapping of settings")
    _check_keys(settings, TOP_KEYS, str(path))
    for key in ("partition", "account"):
        if settings.get(key) is not None and not isinstance(settings[key], str):
            raise DriverError(f"{path}: {key}: expected a name or null")
    for key in ("startup_minutes", "poll_seconds"):
        value = settings.get(key, 1)
        if not isinstance(value, int | float) or value < 0:
            raise DriverError(f"{path}: {key}: expected a number >= 0, got {value!r}")
    if not isinstance(settings.get("sbatch_extra") or [], list):
        raise DriverError(f"{path}: sbatch_extra: expected a list of arguments")
    for stage in ("before", "after"):
        _check_allocation(
            settings.get(stage) or {}, ALLOCATION_KEYS | {"rules"}, f"{path}: {stage}"
        )
    cells = settings.get("cells")
    if not isinstance(cells, dict) or not cells:
        raise DriverError(f"{path}: cells: expected a mapping of cell rules (curvature, train)")
    for rule, spec in cells.items():
        _check_allocation(spec or {}, CELL_KEYS, f"{path}: cells.{rule}")
    rules = before_rules(settings)
    if not isinstance(rules, list | tuple) or not all(isinstance(r, str) for r in rules):
        raise DriverError(f"{path}: before.rules: expected a list of rule names")
    return settings


def before_rules(settings: dict):
    """The rules of the ``before`` allocation: ``before.rules``, or :data:`BEFORE_RULES`
    when the settings leave it out (or ``before`` empty)."""
    rules = (settings.get("before") or {}).get("rules")
    return BEFORE_RULES if rules is None else rules


def _check_keys(mapping: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(mapping) - allowed)
    if unknown:
        raise DriverError(f"{where}: unknown key {unknown[0]!r} (allowed: {sorted(allowed)})")


def _check_allocation(spec: dict, allowed: set[str], where: str) -> None:
    if not isinstance(spec, dict):
        raise DriverError(f"{where}: expected a mapping")
    _check_keys(spec, allowed, where)
    for key in ("cpus", "mem_mb", "minutes", "cells_per_slice"):
        if key in spec and (not isinstance(spec[key], int) or spec[key] < 1):
            raise DriverError(f"{where}.{key}: expected a positive integer, got {spec[key]!r}")
    if "minutes_per_cell" in spec:
        value = spec["minutes_per_cell"]
        if not isinstance(value, int | float) or value <= 0:
            raise DriverError(f"{where}.minutes_per_cell: expected a positive number")
    for key in ("sbatch_extra", "snakemake_extra"):
        if key in spec and not isinstance(spec[key], list):
            raise DriverError(f"{where}.{key}: expected a list of arguments")


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


# --- running ----------------------------------------------------------------------------


class Driver:
    """Submits the allocations of each stage and waits for them; cancels on a signal."""

    def __init__(self, args: argparse.Namespace, settings: dict):
        self.workdir = Path(args.directory).resolve()
        self.settings = settings
        self.snakemake = [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(ROOT / "Snakefile"),
            "--directory",
            str(self.workdir),
            "--workflow-profile",
            str(PROFILE),
        ]
        if args.configfile:  # one option, every file: a second --configfile replaces the first
            self.snakemake += ["--configfile", *(str(Path(f).resolve()) for f in args.configfile)]
        if args.config:
            self.snakemake += ["--config", *args.config]
        self.targets = list(args.targets)
        self.run_id = time.strftime("%Y%m%d-%H%M%S")
        self.rundir = self.workdir / STATE / self.run_id
        self.live: list[Submitted] = []
        self.interrupted = False

    # What is due ----------------------------------------------------------------------

    def due(self) -> dict[str, list[tuple[str, ...]]]:
        """Snakemake's dry run of the targets: the due jobs by rule."""
        cmd = [*self.snakemake, "--dry-run", *self.targets]
        result = subprocess.run(cmd, capture_output=True, text=True, cwd=self.workdir)
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
            raise DriverError(f"the dry run of Snakemake failed:\n{tail}")
        rules = [*self.settings["cells"], *before_rules(self.settings)]
        return due_jobs(result.stdout, with_outputs=rules)

    def check_idle(self) -> None:
        """Refuse to start beside a live earlier run or a Snakemake holding locks here."""
        active = self.workdir / ACTIVE
        if active.exists():
            ids = set(active.read_text().split())
            queued = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True)
            alive = sorted(ids & set(queued.stdout.split()))
            if alive:
                raise DriverError(
                    f"SLURM jobs {' '.join(alive)} of an earlier run in {self.workdir} are "
                    f"still queued or running: wait for them, or scancel {' '.join(alive)}"
                )
        locks = self.workdir / ".snakemake" / "locks"
        if locks.is_dir() and any(locks.iterdir()):
            raise DriverError(
                f"Snakemake locks in {locks}: another Snakemake runs in this folder, or a "
                "killed one left them (then: snakemake --unlock)"
            )

    # Submitting -----------------------------------------------------------------------

    def command(self, allocation: Allocation) -> list[str]:
        """The Snakemake command line an allocation runs."""
        cmd = [*self.snakemake, "--cores", str(allocation.cpus), "--nolock"]
        if allocation.allowed_rules:
            cmd += ["--allowed-rules", *allocation.allowed_rules]
        cmd += list(allocation.snakemake_extra)
        # Targets last (after --allowed-rules, whose values would swallow them otherwise):
        # a slice its cells, `before` its files, `after` the run's targets.
        if allocation.targets or not allocation.allowed_rules:
            cmd += ["--", *(allocation.targets or self.targets)]
        return cmd

    def sbatch(self, allocation: Allocation, script: Path, log: Path) -> list[str]:
        """The sbatch command line of an allocation."""
        cmd = ["sbatch", "--parsable", f"--job-name=goldilocks-{self.run_id}"]
        cmd += [f"--comment={allocation.name}", f"--output={log}", f"--chdir={self.workdir}"]
        cmd += ["--ntasks=1", f"--cpus-per-task={allocation.cpus}"]
        cmd += [f"--mem={allocation.mem_mb}", f"--time={allocation.minutes}"]
        if self.settings.get("partition"):
            cmd.append(f"--partition={self.settings['partition']}")
        if self.settings.get("account"):
            cmd.append(f"--account={self.settings['account']}")
        return [*cmd, *allocation.sbatch_extra, str(script)]

    def write_script(self, allocation: Allocation) -> Path:
        """A batch script holding the allocation's Snakemake command, one argument a line."""
        self.rundir.mkdir(parents=True, exist_ok=True)
        script = self.rundir / f"{allocation.name}.sh"
        args = " \\\n  ".join(shlex.quote(a) for a in self.command(allocation))
        script.write_text(
            f"#!/bin/bash\n# goldilocks slurm_batched: {allocation.name}\nexec {args}\n"
        )
        return script

    def submit(self, allocation: Allocation) -> Submitted:
        script = self.write_script(allocation)
        log = self.rundir / f"{allocation.name}-%j.log"
        result = subprocess.run(
            self.sbatch(allocation, script, log), capture_output=True, text=True
        )
        job_id = result.stdout.strip().split(";")[0]
        if result.returncode != 0 or not job_id.isdigit():
            reason = (result.stderr.strip().splitlines() or [result.stdout.strip()])[0]
            raise DriverError(f"sbatch refused {allocation.name}: {reason}")
        submitted = Submitted(allocation, job_id, Path(str(log).replace("%j", job_id)))
        self.live.append(submitted)
        self._record_active()
        cells = len(allocation.targets)
        print(
            f"slurm_batched: {allocation.name}: SLURM job {job_id}"
            + (f", {cells} target files" if cells else "")
            + f", {allocation.cpus} CPUs, -t {allocation.minutes}, log {submitted.log}",
            flush=True,
        )
        return submitted

    def _record_active(self) -> None:
        active = self.workdir / ACTIVE
        active.parent.mkdir(parents=True, exist_ok=True)
        active.write_text("\n".join(s.job_id for s in self.live if not s.state) + "\n")

    def wait(self, submitted: list[Submitted]) -> list[Submitted]:
        """Poll SLURM until every allocation ended; the ones that did not complete."""
        pending = list(submitted)
        poll = float(self.settings.get("poll_seconds", 5))
        while pending:
            time.sleep(poll)
            states = job_states([s.job_id for s in pending])
            for s in list(pending):
                state = states.get(s.job_id, "")
                if state and state not in FINAL_STATES:
                    continue
                pending.remove(s)
                s.state, s.seconds = final_state(s.job_id, state)
                self._record_active()
                took = f" after {s.seconds:.0f} s" if s.seconds is not None else ""
                print(f"slurm_batched: {s.allocation.name} (SLURM job {s.job_id}): {s.state}{took}")
        return [s for s in submitted if s.state != "COMPLETED"]

    def cancel(self, *_signal) -> None:
        """Cancel the run's allocations (Ctrl-C, SIGTERM); the wait then sees them end."""
        self.interrupted = True
        ids = [s.job_id for s in self.live if not s.state]
        if ids:
            print(f"slurm_batched: cancelling SLURM jobs {' '.join(ids)}", flush=True)
            subprocess.run(["scancel", *ids], check=False)

    def run(self, dry_run: bool) -> int:
        self.check_idle()
        jobs = self.due()
        counts = ", ".join(f"{r} {len(j)}" for r, j in jobs.items()) or "nothing"
        print(f"slurm_batched: due (Snakemake dry run): {counts}", flush=True)
        stages = plan(self.settings, jobs)
        if dry_run:
            for name, allocations in stages.items():
                for a in allocations:
                    log = self.rundir / f"{a.name}-%j.log"
                    sbatch = shlex.join(self.sbatch(a, self.rundir / f"{a.name}.sh", log))
                    print(f"{name}: {sbatch}\n  runs: {shlex.join(self.command(a))[:300]} ...")
            return 0
        signal.signal(signal.SIGINT, self.cancel)
        signal.signal(signal.SIGTERM, self.cancel)
        failed: list[Submitted] = []
        for name in ("before", "cells", "after"):
            if failed or self.interrupted:
                skipped = ", ".join(a.name for a in stages[name])
                if skipped:
                    print(
                        "slurm_batched: not submitted (an allocation failed or the run "
                        f"was cancelled): {skipped}"
                    )
                continue
            submitted = []
            try:
                for allocation in stages[name]:
                    if self.interrupted:
                        break
                    # A signal waits until the job is recorded, so cancel() sees it.
                    signals = {signal.SIGINT, signal.SIGTERM}
                    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
                    try:
                        submitted.append(self.submit(allocation))
                    finally:
                        signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)
            except DriverError:
                # sbatch refused one (a limit on queued jobs?): stop those already queued.
                self.cancel()
                self.wait([s for s in self.live if not s.state])
                raise
            failed += self.wait(submitted)
        (self.workdir / ACTIVE).unlink(missing_ok=True)
        if failed or self.interrupted:
            for s in failed:
                print(
                    f"slurm_batched: FAILED {s.allocation.name}: SLURM job {s.job_id} "
                    f"{s.state}; log {s.log}",
                    file=sys.stderr,
                )
            print(
                "slurm_batched: finished cells are kept; rerun the same command to run the rest",
                file=sys.stderr,
            )
            return 1
        return 0


def job_states(job_ids: list[str]) -> dict[str, str]:
    """SLURM's current state of each job that squeue still knows (finished ones included)."""
    out = subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", ",".join(job_ids), "-o", "%i %T"],
        capture_output=True,
        text=True,
    ).stdout
    return dict(line.split()[:2] for line in out.splitlines() if len(line.split()) >= 2)


def final_state(job_id: str, state: str) -> tuple[str, float | None]:
    """The final state of an ended job and its run time in seconds.

    squeue forgets finished jobs after slurmctld's ``MinJobAge``; then ``sacct`` (where
    the cluster has accounting) gives the state, else it is unknown (counted as failed).
    """
    out = subprocess.run(
        ["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True
    ).stdout
    runtime = re.search(r"\bRunTime=(?:(\d+)-)?(\d+):(\d+):(\d+)", out)
    seconds = None
    if runtime:
        d, h, m, s = (int(x or 0) for x in runtime.groups())
        seconds = float(((d * 24 + h) * 60 + m) * 60 + s)
    if not state:
        found = re.search(r"\bJobState=(\S+)", out)
        if found:
            state = found[1]
        else:
            sacct = subprocess.run(
                ["sacct", "-X", "-n", "-P", "-o", "State", "-j", job_id],
                capture_output=True,
                text=True,
            )
            words = sacct.stdout.split()
            state = words[0] if sacct.returncode == 0 and words else "UNKNOWN"
    return state, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run the workflow on SLURM, each allocation's cells as threads of one "
        "Snakemake (README, On a cluster).",
    )
    parser.add_argument("targets", nargs="*", help="Snakemake targets (default: rule all)")
    parser.add_argument(
        "--configfile",
        action="extend",
        nargs="+",
        default=[],
        help="as Snakemake's (several: merged in order)",
    )
    parser.add_argument("--config", nargs="+", default=[], metavar="KEY=VALUE")
    parser.add_argument("--directory", default=".", help="working directory (default: .)")
    parser.add_argument("--settings", default=str(SETTINGS), help="sbatch settings YAML")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, submit nothing")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(Path(args.settings))
        return Driver(args, settings).run(args.dry_run)
    except DriverError as err:
        print(f"slurm_batched: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
