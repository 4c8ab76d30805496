# Curvature stage: one job per (architecture, dataset, variant, scaling, scale, seed):
# its metrics as one Parquet row, and its per-layer weight-to-gradient ratios beside it
# (docs/method.md section 4).


rule curvature:
    input:
        init=rules.init.output[0],
    output:
        row=CURVATURE_PATTERN,
        layers=LAYERS_PATTERN,
    log:
        CURVATURE_PATTERN.replace("results/", "logs/").replace(".parquet", ".log"),
    params:
        dtype=config["curvature"]["dtype"],
        device=config["device"],
        hvp_method=config["curvature"]["hvp_method"],
        jvp_method=config["curvature"]["jvp_method"],
    run:
        job("curvature_cell")(
            init=input.init,
            output=output.row,
            layers=output.layers,
            log=log[0],
            cell=wildcards,
            threads=threads,
            **params,
        )
