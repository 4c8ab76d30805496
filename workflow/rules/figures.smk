# Figures stage, one pair of rules per entry of goldilocks.figure_spec (what each figure
# shows, which tables and pairs it is drawn from, what it needs; goldilocks.plan derives
# the rest). Rule figure_<N> draws results/figures/fig<N>_<architecture>_<dataset>.{pdf,png}
# from that pair's tables only; rule fig<N> builds figure N of every pair that has its
# data (`snakemake fig4`). The PNGs go into `snakemake --report` with the captions
# workflow/report/fig<N>.rst. Asking for a figure whose data the config does not produce
# stops the DAG build with one line.
from goldilocks.figure_spec import SPEC
from goldilocks.plan import figure_path

for fig in SPEC:

    rule:
        name:
            f"figure_{fig.number}"
        input:
            unpack(figure_tables(fig.number)),
        output:
            pdf=figure_path(fig.number, "{architecture}", "{dataset}", "pdf"),
            png=report(
                figure_path(fig.number, "{architecture}", "{dataset}", "png"),
                caption=f"../report/fig{fig.number}.rst",
                category=f"Figure {fig.number}",
                labels={"architecture": "{architecture}", "dataset": "{dataset}"},
            ),
        log:
            f"logs/figures/fig{fig.number}_{{architecture}}_{{dataset}}.log",
        params:
            number=fig.number,
        conda:
            "../../envs/goldilocks.yaml"
        script:
            "../scripts/figure.py"

    rule:
        name:
            f"fig{fig.number}"
        input:
            figure_files(fig.number),
