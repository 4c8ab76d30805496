# Goldilocks pipeline: data -> init -> curvature, kl, small_alpha, train -> aggregate -> figures, claims.
# Table of contents only; the stages live in workflow/rules/, the science in src/.
import sys
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")


# The working directory's config.yaml, else the repository's: a run in another folder
# (--directory) merges its --configfile over the same defaults as a run here.
configfile: "config.yaml" if Path("config.yaml").is_file() else f"{workflow.basedir}/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/init.smk"
include: "workflow/rules/curvature.smk"
include: "workflow/rules/kl.smk"
include: "workflow/rules/small_alpha.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/claims.smk"


from goldilocks import reporting  # noqa: E402 (common.smk put this repository's src/ first)


rule all:
    input:
        final_targets(),
    default_target: True


# A report needs the run's config (its --configfile): without it, one line naming what is
# missing and the flag to pass, instead of a WorkflowError (goldilocks.reporting).
onstart:
    reporting.record_run(workflow.overwrite_configfiles)


_report = reporting.report_path(sys.argv) if workflow.is_main_process else None
if _report:
    _problem = reporting.report_problem(final_targets(), workflow.overwrite_configfiles, _report)
    if _problem:
        sys.exit(f"goldilocks: {_problem}")
