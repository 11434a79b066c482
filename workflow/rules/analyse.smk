# Stage 5: cross-attention against saliency, per model, direction, split and saliency map.


rule correlate:
    input:
        xattn="results/{model}/{src}-{tgt}/{split}/xattn.zip",
        saliency="results/{model}/{src}-{tgt}/{split}/saliency/{map}.zip",
    output:
        "results/{model}/{src}-{tgt}/{split}/correlation/{map}.tsv",
    log:
        "logs/correlate/{model}/{src}-{tgt}/{split}/{map}.log",
    benchmark:
        "benchmarks/correlate/{model}/{src}-{tgt}/{split}/{map}.tsv"
    conda:
        "../../envs/caspes.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        ca_norm=ANALYSIS["ca_norm"],
        sm_norm=ANALYSIS["sm_norm"],
        subsampling=get_subsampling,
    script:
        "../scripts/correlate.py"


rule timestamps:
    input:
        xattn="results/{model}/{src}-{tgt}/{split}/xattn.zip",
        manifest=get_decode_manifest,
        smx="results/{model}/{src}-{tgt}/{split}/saliency/smx.zip",
        smh=f"results/{{model}}/{{src}}-{{tgt}}/{{split}}/saliency/smh-p{P_H}.zip",
        tokenizer=get_model_tokenizer,
    output:
        "results/{model}/{src}-{tgt}/{split}/timestamps.tsv",
    log:
        "logs/timestamps/{model}/{src}-{tgt}/{split}.log",
    benchmark:
        "benchmarks/timestamps/{model}/{src}-{tgt}/{split}.tsv"
    conda:
        "../../envs/caspes.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        pooling=ANALYSIS["pooling"],
        ca_norm=ANALYSIS["ca_norm"],
        sm_norm=ANALYSIS["sm_norm"],
        subsampling=get_subsampling,
    script:
        "../scripts/timestamps.py"


rule convergence_maps:
    input:
        checkpoint=get_checkpoint,
        manifest=get_decode_manifest,
        xattn="results/{model}/{src}-{tgt}/{split}/xattn.zip",
        segments=get_segments,
    output:
        "results/{model}/{src}-{tgt}/{split}/convergence.tsv",
    log:
        "logs/convergence_maps/{model}/{src}-{tgt}/{split}.log",
    benchmark:
        "benchmarks/convergence_maps/{model}/{src}-{tgt}/{split}.tsv"
    conda:
        "../../envs/caspes.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=720,
    params:
        settings=get_convergence_settings,
    script:
        "../scripts/convergence_maps.py"
