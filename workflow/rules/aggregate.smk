# Aggregate stage: per-cell Parquet files into one table per architecture/dataset pair and
# scaling (a figure reads only the parts it draws; the curvature part brings its
# Goldilocks zone), then the tables under results/ (docs/method.md section 9).


rule aggregate_curvature:
    input:
        unpack(curvature_files),
    output:
        table=TABLE.replace("{kind}", "curvature"),
        layers=TABLE.replace("{kind}", "layer_ratios"),
        zone=TABLE.replace("{kind}", "zone"),
    log:
        "logs/aggregate/curvature_{architecture}_{dataset}_{scaling}.log",
    params:
        threshold=config["figures"]["zone_threshold"],
    conda:
        "../../envs/goldilocks.yaml"
    script:
        "../scripts/aggregate_cells.py"


rule aggregate_training:
    input:
        train_files,
    output:
        table=TABLE.replace("{kind}", "training"),
    log:
        "logs/aggregate/training_{architecture}_{dataset}_{scaling}.log",
    conda:
        "../../envs/goldilocks.yaml"
    script:
        "../scripts/aggregate_cells.py"


rule tables:
    input:
        curvature=table_parts("curvature"),
        layers=table_parts("layer_ratios"),
        zone=table_parts("zone"),
        training=table_parts("training") if TRAINING else [],
        kl=kl_tables(),
        small_alpha=PLAN.small_alpha_tables(),
    output:
        curvature="results/curvature.parquet",
        layers="results/layer_ratios.parquet",
        zone="results/goldilocks_zone.parquet",
        training="results/training.parquet" if TRAINING else [],
        kl="results/kl_layernorm.parquet" if KL_PAIRS else [],
        small_alpha="results/small_alpha.parquet" if SMALL_ALPHA_PAIRS else [],
        convergence="results/convergence.parquet" if TRAINING else [],
    log:
        "logs/aggregate/tables.log",
    params:
        convergence=config["convergence"],
    conda:
        "../../envs/goldilocks.yaml"
    script:
        "../scripts/tables.py"
