# Goldilocks pipeline: data -> init -> curvature, kl, train -> aggregate -> figures, claims.
# Table of contents only; the stages live in workflow/rules/, the science in src/.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


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
