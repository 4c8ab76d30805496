# Goldilocks pipeline: data -> init -> curvature, kl, train -> aggregate -> figures, claims.
# Table of contents only; the stages live in workflow/rules/, the science in src/.
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
include: "workflow/rules/train.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/claims.smk"


rule all:
    input:
        final_targets(),
    default_target: True
