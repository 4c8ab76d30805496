# Training stage: one job per (architecture, dataset, variant, scaling, scale, lr_base,
# seed): full-batch GD (docs/method.md section 5), one Parquet row per logged epoch. The checkpoint
# (results/checkpoints/, same keys) is not an output: Snakemake deletes the outputs of a
# failed job, and the checkpoint must survive a kill. Its path and checkpoint_every go to
# the job directly (train_execution in common.smk), not through params: params are a
# rerun trigger, and where a cell saves its checkpoints must not rerun finished cells.
# batch_cells and batch_wait (how many cells train together, docs/method.md section 5.7)
# go the same way: they change no result. tf32 and log_convergence are params only when
# true (TRAIN_PRECISION and TRAIN_CONVERGENCE in common.smk).
#
# curvature.hvp_method and jvp_method change a training cell only with curvature along
# training (curvature_every > 0). Without it they are the constant "auto": Snakemake
# compares the recorded param values, so dropping them would rerun every finished cell,
# and "auto" is what every cell of a default config recorded.
TRAIN_CURVATURE = (
    {
        "hvp_method": config["curvature"]["hvp_method"],
        "jvp_method": config["curvature"]["jvp_method"],
    }
    if config["training"]["curvature_every"]
    else {"hvp_method": "auto", "jvp_method": "auto"}
)


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
        curvature_every=config["training"]["curvature_every"],
        **TRAIN_CURVATURE,
        **TRAIN_PRECISION,
        **TRAIN_CONVERGENCE,
    run:
        job("train_cell")(
            init=input.init,
            data=input.data,
            output=output[0],
            log=log[0],
            cell=wildcards,
            threads=threads,
            **train_execution(wildcards),
            **params,
        )
