# Claims stage: every claim of the paper tested on this run's tables (docs/claims.md),
# with the number behind each verdict: results/claims.parquet, and as a table in the
# report (results/claims.html). Thresholds: the config's claims: section.


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
    log:
        "logs/claims/claims.log",
    params:
        thresholds=config["claims"],
    conda:
        "../../envs/goldilocks.yaml"
    script:
        "../scripts/claims.py"
