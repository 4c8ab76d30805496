# Claims stage: every claim of the paper tested per seed on this run's tables
# (docs/claims.md), with the numbers behind each verdict: results/claims.parquet, a
# summary grid and table in the report (results/claims.html) and the claims figure
# (results/figures/claims.png). Thresholds: the config's claims: section.


rule claims:
    input:
        unpack(claims_inputs),
    output:
        table="results/claims.parquet",
        html=report(
            "results/claims.html",
            caption="../report/claims.rst",
            category="Claims",
        ),
        figure=report(
            "results/figures/claims.png",
            caption="../report/claims.rst",
            category="Claims",
        ),
    log:
        "logs/claims/claims.log",
    params:
        thresholds=config["claims"],
    conda:
        "../../envs/goldilocks.yaml"
    script:
        "../scripts/claims.py"
