# Curvature stage: one job per (architecture, dataset, variant, scaling, scale, seed),
# one Parquet row each (SPEC section 4).


rule curvature:
    input:
        init=rules.init.output[0],
    output:
        CURVATURE_PATTERN,
    log:
        CURVATURE_PATTERN.replace("results/", "logs/").replace(".parquet", ".log"),
    params:
        dtype=config["curvature"]["dtype"],
        device=config["device"],
        hvp_method=config["curvature"]["hvp_method"],
        jvp_method=config["curvature"]["jvp_method"],
    run:
        job("curvature_cell")(input.init, output[0], log[0], wildcards, params, threads)
