# Paper A: ANN pretraining -> parameter transfer -> SNN fine-tuning, and the
# SNN trained from scratch that the pipelines are compared with.


rule pretrain_ann:
    output:
        ckpt="models/pretrain/ann/{dataset}.pt",
        live=directory("results/pretrain/ann/{dataset}"),
    input:
        data="data/prepared/pretrain/{dataset}.json",
        code=code(*PRETRAIN_CODE),
    params:
        dataset=lambda w: PRETRAIN["datasets"][w.dataset],
        model=PRETRAIN.get("model"),
        snn=PRETRAIN.get("snn"),
        ann=PRETRAIN.get("ann"),
        num_workers=PRETRAIN.get("num_workers"),
        seed=PRETRAIN.get("seed"),
        device=config["device"],
        threads=config["threads"],
        nproc=config["nproc"],
        amp=config["amp"],
    resources:
        gpu=config["nproc"],  # one GPU per data-parallel process
    log:
        "logs/pretrain_ann/{dataset}.log",
    shell:
        "python -m pipeline pretrain-ann --dataset {wildcards.dataset} --data {input.data}"
        " --ckpt {output.ckpt} --live {output.live} 2> {log}"


rule transfer:
    output:
        init="models/pretrain/transfer/{pipe}.pt",
        report="results/pretrain/transfer/{pipe}.json",
    input:
        ann=lambda w: f"models/pretrain/ann/{PRETRAIN['pipelines'][w.pipe]['source']}.pt",
        code=code(*PRETRAIN_CODE),
    params:
        pipeline=lambda w: PRETRAIN["pipelines"][w.pipe],
        target=lambda w: PRETRAIN["datasets"][PRETRAIN["pipelines"][w.pipe]["target"]],
        model=PRETRAIN.get("model"),
        snn=PRETRAIN.get("snn"),
        seed=PRETRAIN.get("seed"),
    log:
        "logs/transfer/{pipe}.log",
    shell:
        "python -m pipeline transfer --pipeline {wildcards.pipe} --ann {input.ann}"
        " --out {output.init} --report {output.report} 2> {log}"


rule finetune_snn:
    output:
        ckpt="models/pretrain/finetune/{pipe}.pt",
        live=directory("results/pretrain/finetune/{pipe}"),
    input:
        init="models/pretrain/transfer/{pipe}.pt",
        data=lambda w: f"data/prepared/pretrain/{PRETRAIN['pipelines'][w.pipe]['target']}.json",
        code=code(*PRETRAIN_CODE),
    params:
        target=lambda w: PRETRAIN["datasets"][PRETRAIN["pipelines"][w.pipe]["target"]],
        model=PRETRAIN.get("model"),
        snn=PRETRAIN.get("snn"),
        finetune=PRETRAIN.get("finetune"),
        num_workers=PRETRAIN.get("num_workers"),
        seed=PRETRAIN.get("seed"),
        device=config["device"],
        threads=config["threads"],
        nproc=config["nproc"],
        amp=config["amp"],
    resources:
        gpu=config["nproc"],  # one GPU per data-parallel process
    log:
        "logs/finetune_snn/{pipe}.log",
    shell:
        "python -m pipeline finetune-snn --pipeline {wildcards.pipe} --init {input.init}"
        " --data {input.data} --ckpt {output.ckpt} --live {output.live} 2> {log}"


rule train_snn_scratch:
    output:
        ckpt="models/pretrain/scratch/{dataset}.pt",
        live=directory("results/pretrain/scratch/{dataset}"),
    input:
        data="data/prepared/pretrain/{dataset}.json",
        code=code(*PRETRAIN_CODE),
    params:
        dataset=lambda w: PRETRAIN["datasets"][w.dataset],
        model=PRETRAIN.get("model"),
        snn=PRETRAIN.get("snn"),
        scratch=PRETRAIN.get("scratch"),
        num_workers=PRETRAIN.get("num_workers"),
        seed=PRETRAIN.get("seed"),
        device=config["device"],
        threads=config["threads"],
        nproc=config["nproc"],
        amp=config["amp"],
    resources:
        gpu=config["nproc"],  # one GPU per data-parallel process
    log:
        "logs/train_snn_scratch/{dataset}.log",
    shell:
        "python -m pipeline train-snn-scratch --dataset {wildcards.dataset} --data {input.data}"
        " --ckpt {output.ckpt} --live {output.live} 2> {log}"
