# Figures stage: each figure of one architecture/dataset pair is its own target
# (results/figures/fig<N>_<architecture>_<dataset>.{pdf,png}) and needs only its pair.


rule figure_1:
    input:
        curvature=PAIR_TABLE.replace("{kind}", "curvature"),
    output:
        pdf="results/figures/fig1_{architecture}_{dataset}.pdf",
        png="results/figures/fig1_{architecture}_{dataset}.png",
    log:
        "logs/figures/fig1_{architecture}_{dataset}.log",
    params:
        number=1,
        threshold=config["figures"]["zone_threshold"],
    conda:
        "../../envs/goldilocks.yaml"
    script:
        "../scripts/figure.py"


rule figure_2:
    input:
        curvature=PAIR_TABLE.replace("{kind}", "curvature"),
        training=PAIR_TABLE.replace("{kind}", "training"),
    output:
        pdf="results/figures/fig2_{architecture}_{dataset}.pdf",
        png="results/figures/fig2_{architecture}_{dataset}.png",
    log:
        "logs/figures/fig2_{architecture}_{dataset}.log",
    params:
        number=2,
        threshold=config["figures"]["zone_threshold"],
    conda:
        "../../envs/goldilocks.yaml"
    script:
        "../scripts/figure.py"
