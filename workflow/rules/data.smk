# Data stage: each dataset read once through torchvision (mirror folders first) into one
# tensor file that later jobs load fast. Its bytes depend on the dataset's content only,
# not on where it was read from (goldilocks.io.save_tensors).
#
# Where the bytes come from (data.mirrors, data.root, data.download) is an execution
# setting: it goes to the job directly (DATA_EXECUTION), not through params, a rerun
# trigger. The params below are constants, the values these three keys had as params
# before (their schema defaults, which must therefore stay): Snakemake compares the
# recorded param values, so a param that disappears would rerun every finished data file,
# and with it every cell. A mirror that now holds other content than a finished data file
# was built from is named in one line at parse (goldilocks.sources.changed, the main
# process only), with the command that rebuilds it; the run keeps the old tensors
# (docs/method.md section 8.2).
DATA_PARAMS_RECORDED = {
    k: SCHEMA["properties"]["data"]["properties"][k]["default"]
    for k in ("mirrors", "root", "download")
}


# How the data job reads its dataset: none of it a result, so not params.
DATA_EXECUTION = {k: config["data"][k] for k in ("mirrors", "root", "download")}

if workflow.is_main_process:
    for _dataset in sorted({pair[1] for pair in PLAN.pairs}):
        _change = sources.changed(
            _dataset, DATA_EXECUTION["mirrors"], f"results/data/{_dataset}.pt"
        )
        if _change:
            sys.stderr.write(f"goldilocks: {_change}\n")


rule data:
    output:
        "results/data/{dataset}.pt",
    log:
        "logs/data/{dataset}.log",
    params:
        **DATA_PARAMS_RECORDED,
    run:
        job("prepare_dataset")(
            dataset=wildcards.dataset, output=output[0], log=log[0], **DATA_EXECUTION
        )
