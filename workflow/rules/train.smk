# Training stage: one job per (architecture, dataset, variant, scaling, scale, lr_base,
# seed): full-batch GD (SPEC section 5), one Parquet row per logged epoch. The checkpoint
# is a param, not an output: Snakemake deletes the outputs of a failed job, and the
# checkpoint must survive a kill. checkpoint_every is read in the job, not a param, so
# changing it does not rerun finished cells (rerun-triggers include params).


rule train:
    input:
        init=rules.init.output[0],
        data=rules.data.output[0],
    output:
        TRAIN_PATTERN,
    log:
        TRAIN_PATTERN.replace("results/", "logs/").replace(".parquet", ".log"),
    params:
        dtype=config["training"]["dtype"],
        device=config["device"],
        epochs=config["training"]["epochs"],
        log_every=config["training"]["log_every"],
        train_subset=config["training"]["train_subset"],
        test_subset=config["training"]["test_subset"],
        chunk_size=config["training"]["chunk_size"],
        alpha_lr_rule=config["training"]["alpha_lr_rule"],
        checkpoint=CHECKPOINT_PATTERN,
    run:
        job("train_cell")(
            input.init,
            input.data,
            output[0],
            log[0],
            wildcards,
            params,
            threads,
            config["training"]["checkpoint_every"],
        )
