"""``snakemake --report`` after a run with another config (torch-free, runs at parse).

The report is built from the config Snakemake parses now: after a run with
``--configfile configs/tiny.yaml``, a report asked for without that file looks for the
quick default's figures and stops with Snakemake's WorkflowError about a file that does
not exist. Every run that executes jobs records its ``--configfile`` files
(:func:`record_run`); a report whose targets are missing names the first one and the
flag to pass, in one line (:func:`report_problem`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

#: The last run's --configfile files, written by every run that executes jobs.
RUN_RECORD = "results/.last_run.yaml"


def report_path(argv: Sequence[str]) -> str | None:
    """The file ``--report`` asks for in a Snakemake command line, else None (also for
    ``--report-after-run``, which runs the workflow first, with its own config)."""
    for i, arg in enumerate(argv):
        if arg == "--report":
            following = argv[i + 1] if i + 1 < len(argv) else ""
            return following if following and not following.startswith("-") else "report.html"
        if arg.startswith("--report="):
            return arg.partition("=")[2]
    return None


def record_run(configfiles: Sequence[str | os.PathLike], path: str = RUN_RECORD) -> None:
    """Record the run's ``--configfile`` files (as given, in order) for a later report."""
    import yaml

    from goldilocks.io import write_atomic

    text = yaml.safe_dump({"configfiles": [str(f) for f in configfiles]})
    write_atomic(path, lambda tmp: tmp.write_text(text))


def report_problem(
    targets: Sequence[str],
    configfiles: Sequence[str | os.PathLike],
    report: str,
    record: str = RUN_RECORD,
) -> str | None:
    """Why ``snakemake --report`` with this config cannot work, in one line, or None.

    ``targets``: the run's final targets under this config; ``configfiles``: this
    command's ``--configfile`` files."""
    import yaml

    missing = [t for t in targets if not Path(t).exists()]
    if not missing:
        return None
    more = f" (and {len(missing) - 1} more of this config's targets)" if len(missing) > 1 else ""
    what = f"--report: {missing[0]} does not exist{more}"
    try:
        last = yaml.safe_load(Path(record).read_text())["configfiles"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        last = None
    given = [str(f) for f in configfiles]
    if last is not None and last != given:
        flag = f" --configfile {' '.join(last)}" if last else ""
        used = f"--configfile {' '.join(last)}" if last else "no --configfile"
        return (
            f"{what}; the last run here used {used}: pass the same, "
            f"`snakemake --report {report}{flag}`"
        )
    return (
        f"{what}; run the workflow first, or pass the run's --configfile: "
        f"`snakemake --report {report} --configfile <the run's config>`"
    )
