# Stage 4: SPES saliency. SLIC segmentations (cached per split), SM^X and SM^H sharded over
# utterances (scatter/gather: every shard is a job of its own, a failed one reruns alone), then
# deletion curves and the size metric of every map.


scattergather:
    explain=EXPLAIN["shards"],


rule segment_spectrograms:
    input:
        manifest="results/data/{corpus}/{lang}/{split}.fbank.tsv",
    output:
        "results/data/{corpus}/{lang}/{split}.segments.zip",
    log:
        "logs/segment_spectrograms/{corpus}/{lang}/{split}.log",
    benchmark:
        "benchmarks/segment_spectrograms/{corpus}/{lang}/{split}.tsv"
    conda:
        "../../envs/caspes.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        options=SEGMENTATION,
        max_utterances=EXPLAIN["max_utterances"],
    script:
        "../scripts/segment_spectrograms.py"


rule explain_input:
    input:
        checkpoint=get_checkpoint,
        manifest=get_decode_manifest,
        xattn="results/{model}/{src}-{tgt}/{split}/xattn.zip",
        segments=get_segments,
    output:
        store="results/{model}/{src}-{tgt}/{split}/saliency/smx.shards/{scatteritem}.zip",
        timing="results/{model}/{src}-{tgt}/{split}/saliency/smx.shards/{scatteritem}.tsv",
    log:
        "logs/explain_input/{model}/{src}-{tgt}/{split}/{scatteritem}.log",
    benchmark:
        "benchmarks/explain_input/{model}/{src}-{tgt}/{split}/{scatteritem}.tsv"
    priority: get_explain_priority
    conda:
        "../../envs/caspes.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=720,
    params:
        kind="input",
        options=get_occlusion_settings("input"),
        max_utterances=EXPLAIN["max_utterances"],
    script:
        "../scripts/explain.py"


rule explain_encoder:
    input:
        checkpoint=get_checkpoint,
        manifest=get_decode_manifest,
        xattn="results/{model}/{src}-{tgt}/{split}/xattn.zip",
    output:
        store="results/{model}/{src}-{tgt}/{split}/saliency/smh-p{p_h}.shards/{scatteritem}.zip",
        timing="results/{model}/{src}-{tgt}/{split}/saliency/smh-p{p_h}.shards/{scatteritem}.tsv",
    log:
        "logs/explain_encoder/{model}/{src}-{tgt}/{split}/p{p_h}/{scatteritem}.log",
    benchmark:
        "benchmarks/explain_encoder/{model}/{src}-{tgt}/{split}/p{p_h}/{scatteritem}.tsv"
    priority: get_explain_priority
    conda:
        "../../envs/caspes.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=240,
    params:
        kind="encoder",
        options=get_occlusion_settings("encoder"),
        max_utterances=EXPLAIN["max_utterances"],
    script:
        "../scripts/explain.py"


rule gather_saliency:
    input:
        stores=gather.explain(
            "results/{{model}}/{{src}}-{{tgt}}/{{split}}/saliency/{{map}}.shards/{scatteritem}.zip"
        ),
        timings=gather.explain(
            "results/{{model}}/{{src}}-{{tgt}}/{{split}}/saliency/{{map}}.shards/{scatteritem}.tsv"
        ),
    output:
        store="results/{model}/{src}-{tgt}/{split}/saliency/{map}.zip",
        timing="results/{model}/{src}-{tgt}/{split}/saliency/{map}.timing.tsv",
    log:
        "logs/gather_saliency/{model}/{src}-{tgt}/{split}/{map}.log",
    localrule: True
    conda:
        "../../envs/caspes.yaml"
    script:
        "../scripts/gather_saliency.py"


rule deletion:
    input:
        checkpoint=get_checkpoint,
        tokenizer=get_model_tokenizer,
        manifest=get_decode_manifest,
        hyps="results/{model}/{src}-{tgt}/{split}/hyps.tsv",
        maps=get_deletion_maps,
    output:
        curve="results/{model}/{src}-{tgt}/{split}/deletion/{dmap}.tsv",
        hyps="results/{model}/{src}-{tgt}/{split}/deletion/{dmap}.hyps.tsv",
    log:
        "logs/deletion/{model}/{src}-{tgt}/{split}/{dmap}.log",
    benchmark:
        "benchmarks/deletion/{model}/{src}-{tgt}/{split}/{dmap}.tsv"
    conda:
        "../../envs/caspes.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=240,
    params:
        task=get_task,
        decoding=DELETION_DECODING,
        settings=EXPLAIN["deletion"],
        max_utterances=EXPLAIN["max_utterances"],
    script:
        "../scripts/deletion.py"


rule size:
    input:
        "results/{model}/{src}-{tgt}/{split}/saliency/{map}.zip",
    output:
        "results/{model}/{src}-{tgt}/{split}/size/{map}.tsv",
    log:
        "logs/size/{model}/{src}-{tgt}/{split}/{map}.log",
    conda:
        "../../envs/caspes.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    script:
        "../scripts/size.py"


rule explanation_table:
    input:
        [f for f in explain_outputs() if f != "results/explanations.tsv"],
        explained_correlations(),
    output:
        "results/explanations.tsv",
    log:
        "logs/explanation_table/explanations.log",
    localrule: True
    conda:
        "../../envs/caspes.yaml"
    params:
        pooling=ANALYSIS["pooling"],
    script:
        "../scripts/explanation_table.py"
