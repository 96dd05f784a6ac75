# Dataset preparation. The embedded datasets (generated spikes, digits images
# and their event conversion) need no download; pointing a root in params.yaml
# at real files makes the prepare rules read those instead.


rule delays_synth:
    output:
        directory("data/raw/delays_synth"),
    input:
        code=code(*DELAYS_DATA_CODE),
    params:
        synth=DELAYS.get("synth"),
    log:
        "logs/delays_synth.log",
    shell:
        "python -m pipeline delays-synth --out {output} 2> {log}"


rule delays_prepare:
    output:
        directory("data/prepared/delays/{dataset}"),
    input:
        root=lambda w: DELAYS["sets"][w.dataset]["root"],
        code=code(*DELAYS_DATA_CODE),
    params:
        set=lambda w: DELAYS["sets"][w.dataset],
    log:
        "logs/delays_prepare/{dataset}.log",
    shell:
        "python -m pipeline delays-prepare --dataset {wildcards.dataset} --out {output} 2> {log}"


rule images_embedded:
    output:
        directory("data/raw/digits_images"),
    input:
        code=code(*PRETRAIN_CODE),
    params:
        digits=PRETRAIN.get("digits"),
    log:
        "logs/images_embedded.log",
    shell:
        "python -m pipeline images-embedded --out {output} 2> {log}"


rule es_imagenet_convert:
    output:
        directory("data/raw/digits_es"),
    input:
        images="data/raw/digits_images",
        code=code(*PRETRAIN_CODE),
    params:
        es_convert=PRETRAIN.get("es_convert"),
    log:
        "logs/es_imagenet_convert.log",
    shell:
        "python -m pipeline es-imagenet-convert --images {input.images} --out {output} 2> {log}"


rule pretrain_index:
    output:
        "data/prepared/pretrain/{dataset}.json",
    input:
        root=lambda w: PRETRAIN["datasets"][w.dataset]["root"],
        code=code(*PRETRAIN_INDEX_CODE),
    params:
        dataset=lambda w: PRETRAIN["datasets"][w.dataset],
    log:
        "logs/pretrain_index/{dataset}.log",
    shell:
        "python -m pipeline pretrain-index --dataset {wildcards.dataset} --out {output} 2> {log}"
