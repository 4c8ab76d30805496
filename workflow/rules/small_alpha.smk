# Small-alpha side table (docs/method.md section 2.3): per architecture/dataset pair, for
# every variant with a small-alpha exponent m and every seed, the logits' norm and their
# input-dependent share on the variant's joint_residual alpha grid, and the measured m
# (slope of log ||f|| against log alpha at alpha = 1e-9..1e-7); float64, on each seed's
# curvature batch. Only when joint_residual is a curvature scaling.


rule small_alpha:
    input:
        small_alpha_init_files,
    output:
        SMALL_ALPHA_TABLE,
    log:
        "logs/small_alpha/{architecture}_{dataset}.log",
    params:
        cells=small_alpha_cells,
        alphas=small_alpha_grids,
    run:
        job("small_alpha_pair")(
            inits=list(input), output=output[0], log=log[0], cell=wildcards, threads=threads, **params
        )
