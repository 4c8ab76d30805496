# Init stage: one job per (architecture, dataset, variant, seed) with the unscaled
# parameters, the curvature batch and the projection R. Scaling happens in the consumer.


rule init:
    input:
        data=rules.data.output[0],
    output:
        INIT_PATTERN,
    log:
        "logs/init/{architecture}_{dataset}/{variant}/seed{seed}.log",
    params:
        batch_size=config["curvature"]["batch_size"],
        subspace_dim=config["curvature"]["subspace_dim"],
    run:
        job("init_cell")(data=input.data, output=output[0], log=log[0], cell=wildcards, **params)
