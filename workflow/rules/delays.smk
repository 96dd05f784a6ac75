# Paper B: train each (dataset, variant, seed), then evaluate it with rounded
# integer delays on the test split.


rule delays_train:
    output:
        ckpt=directory("models/delays/{dataset}/{variant}/s{seed}"),
        live=directory("results/delays/train/{dataset}/{variant}/s{seed}"),
    input:
        data="data/prepared/delays/{dataset}",
        code=code(*DELAYS_TRAIN_CODE),
    params:
        set=lambda w: DELAYS["sets"][w.dataset],
        train=DELAYS.get("train"),
        device=config["device"],
        threads=config["threads"],
        nproc=config["nproc"],
        amp=config["amp"],
    resources:
        gpu=config["nproc"],  # one GPU per data-parallel process
    log:
        "logs/delays_train/{dataset}_{variant}_s{seed}.log",
    shell:
        "python -m pipeline delays-train --dataset {wildcards.dataset} --variant {wildcards.variant}"
        " --seed {wildcards.seed} --data {input.data} --ckpt {output.ckpt} --live {output.live} 2> {log}"


rule delays_evaluate:
    output:
        "results/delays/eval/{dataset}/{variant}/s{seed}.json",
    input:
        data="data/prepared/delays/{dataset}",
        ckpt="models/delays/{dataset}/{variant}/s{seed}",
        live="results/delays/train/{dataset}/{variant}/s{seed}",
        code=code(*DELAYS_TRAIN_CODE),
    params:
        set=lambda w: DELAYS["sets"][w.dataset],
        train=DELAYS.get("train"),
        device=config["device"],
        threads=config["threads"],
    resources:
        gpu=1,
    log:
        "logs/delays_evaluate/{dataset}_{variant}_s{seed}.log",
    shell:
        "python -m pipeline delays-evaluate --dataset {wildcards.dataset} --variant {wildcards.variant}"
        " --seed {wildcards.seed} --data {input.data} --ckpt {input.ckpt} --live {input.live}"
        " --out {output} 2> {log}"
