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
``profiles/slurm-batched/sbatch.yaml``, checked against
``workflow/schemas/sbatch.schema.yaml``. The plan (settings, what is due, the
allocations) is :mod:`goldilocks.slurm_plan`; this script keeps the I/O: Snakemake's dry
run, sbatch, squeue, scancel and signals.

    python workflow/slurm_batched.py [targets ...] [--configfile FILE ...]
        [--config KEY=VALUE ...] [--directory DIR] [--settings YAML] [--dry-run]

Exits 0 when every allocation completed; otherwise 1 after all submitted allocations
ended, naming each failed one with its SLURM state (TIMEOUT, CANCELLED, FAILED,
OUT_OF_MEMORY) and log. Ctrl-C (SIGINT) or SIGTERM cancels the run's allocations.
"""

from __future__ import annotations

import argparse
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from goldilocks.slurm_plan import (
    Allocation,
    DriverError,
    before_rules,
    due_jobs,
    load_settings,
    plan,
)

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "profiles" / "slurm-batched"
SETTINGS = PROFILE / "sbatch.yaml"
SCHEMA = ROOT / "workflow" / "schemas" / "sbatch.schema.yaml"
# Where a run keeps its batch scripts and SLURM logs, and the ids of its live jobs.
STATE = Path(".snakemake") / "slurm_batched"
ACTIVE = STATE / "active_jobs"


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


@dataclass
class Submitted:
    """A submitted allocation: its SLURM job id, its log and, once ended, its state."""

    allocation: Allocation
    job_id: str
    log: Path
    state: str = ""
    seconds: float | None = None


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
        settings = load_settings(Path(args.settings), SCHEMA)
        return Driver(args, settings).run(args.dry_run)
    except DriverError as err:
        print(f"slurm_batched: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
