# Figures stage: figure N of one architecture/dataset pair is its own target,
# results/figures/fig<N>_<architecture>_<dataset>.{pdf,png}, drawn from that pair's tables
# only (FIGURE_INPUTS in common.smk says which), by rule figure_<N>; rule fig<N> builds
# figure N of every pair that has its data (`snakemake fig4`; the trained pairs for 2, 4,
# 5 and 7, those with a LayerNorm variant of k = 1 for 3). The PNGs go into
# `snakemake --report` with the captions workflow/report/fig<N>.rst. Asking for a figure
# whose data the config does not produce stops the DAG build with one line.
#
#   1  Tr(H)/||H||_F against the scale: rows alpha / joint / temperature, columns variants
#   2  final train accuracy over T x eta0, one panel per variant, temperature zone drawn on
#   3  LayerNorm variants: KL(softmax(alpha f) || softmax(f_alpha)) against alpha
#   4  alpha scaling: final train (top) and test (bottom) accuracy over alpha x eta0, zone
#   5  temperature scaling: final test accuracy over T x eta0, zone
#   6  Tr/||.||_F and spectral norm of Hessian, G-term and H-term against the scale
#   7  initial Tr(H)/||H||_F against the best final train accuracy per trained scale, zone
#      ringed

for n in FIGURES:

    rule:
        name:
            f"figure_{n}"
        input:
            unpack(figure_tables(n)),
        output:
            pdf=f"results/figures/fig{n}_{{architecture}}_{{dataset}}.pdf",
            png=report(
                f"results/figures/fig{n}_{{architecture}}_{{dataset}}.png",
                caption=f"../report/fig{n}.rst",
                category=f"Figure {n}",
                labels={"architecture": "{architecture}", "dataset": "{dataset}"},
            ),
        log:
            f"logs/figures/fig{n}_{{architecture}}_{{dataset}}.log",
        params:
            number=n,
        conda:
            "../../envs/goldilocks.yaml"
        script:
            "../scripts/figure.py"

    rule:
        name:
            f"fig{n}"
        input:
            figure_files(n),
