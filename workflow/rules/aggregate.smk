# Aggregate stage: per-cell Parquet files into per-pair tables (what a figure of one pair
# needs), then the tables of SPEC section 9 under results/.


rule aggregate_curvature:
    input:
        curvature_files,
    output:
        table=PAIR_TABLE.replace("{kind}", "curvature"),
        layers=PAIR_TABLE.replace("{kind}", "layer_ratios"),
    log:
        "logs/aggregate/curvature_{architecture}_{dataset}.log",
    conda:
        "../../envs/goldilocks.yaml"
    script:
        "../scripts/aggregate_cells.py"


rule aggregate_training:
    input:
        train_files,
    output:
        table=PAIR_TABLE.replace("{kind}", "training"),
    log:
        "logs/aggregate/training_{architecture}_{dataset}.log",
    conda:
        "../../envs/goldilocks.yaml"
    script:
        "../scripts/aggregate_cells.py"


rule tables:
    input:
        curvature=pair_tables("curvature"),
        layers=pair_tables("layer_ratios"),
        training=pair_tables("training") if TRAINING else [],
    output:
        curvature="results/curvature.parquet",
        layers="results/layer_ratios.parquet",
        zone="results/goldilocks_zone.parquet",
        training="results/training.parquet" if TRAINING else [],
    log:
        "logs/aggregate/tables.log",
    params:
        threshold=config["figures"]["zone_threshold"],
    conda:
        "../../envs/goldilocks.yaml"
    script:
        "../scripts/tables.py"
