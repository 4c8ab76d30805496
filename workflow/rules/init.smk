# Init stage: one job per (architecture, dataset, variant, seed) with the unscaled
# parameters, the curvature batch and the projection R. Scaling happens in the consumer.


# A registered model's config entry (factory, alpha_exempt, its variants' numbers) as a
# file its init jobs read as an input: editing the entry reruns this job (a params
# change), hence the model's init jobs and everything downstream of them (their input
# is newer). Built-in architectures have no such file; their jobs are unaffected.
rule model_spec:
    output:
        MODEL_SPEC,
    log:
        "logs/models/{architecture}.log",
    params:
        spec=model_spec,
    run:
        from goldilocks.io import write_atomic

        write_atomic(output[0], lambda tmp: tmp.write_text(f"{params.spec}\n"))


rule init:
    input:
        data=rules.data.output[0],
        model=model_spec_file,
    output:
        INIT_PATTERN,
    log:
        "logs/init/{architecture}_{dataset}/{variant}/seed{seed}.log",
    params:
        batch_size=config["curvature"]["batch_size"],
        subspace_dim=config["curvature"]["subspace_dim"],
    run:
        job("init_cell")(data=input.data, output=output[0], log=log[0], cell=wildcards, **params)
