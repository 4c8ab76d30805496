# KL stage (figure 3): per architecture/dataset pair, how far the logits of the LayerNorm
# variants stray from linear alpha scaling, KL(softmax(alpha f) || softmax(f_alpha)), over
# the alpha_linear range (figures.kl_num points); float64, on each seed's curvature batch.


rule kl:
    input:
        kl_init_files,
    output:
        KL_TABLE,
    log:
        "logs/kl/{architecture}_{dataset}.log",
    params:
        cells=kl_cells,
        scales=kl_scales(),
    run:
        job("kl_pair")(
            inits=list(input), output=output[0], log=log[0], cell=wildcards, threads=threads, **params
        )
