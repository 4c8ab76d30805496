# Data stage: each dataset read once through torchvision (mirror folders first) into one
# tensor file that later jobs load fast.


rule data:
    output:
        "results/data/{dataset}.pt",
    log:
        "logs/data/{dataset}.log",
    params:
        mirrors=config["data"]["mirrors"],
        root=config["data"]["root"],
        download=config["data"]["download"],
    run:
        job("prepare_dataset")(dataset=wildcards.dataset, output=output[0], log=log[0], **params)
