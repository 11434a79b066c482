# Stage 3: beam search on the dev and test sets, cross-attention of every hypothesis, quality.


rule decode:
    input:
        checkpoint=get_checkpoint,
        tokenizer=get_model_tokenizer,
        manifest=get_decode_manifest,
    output:
        hyps="results/{model}/{src}-{tgt}/{split}/hyps.tsv",
        xattn="results/{model}/{src}-{tgt}/{split}/xattn.zip",
        quality="results/{model}/{src}-{tgt}/{split}/quality.tsv",
    log:
        "logs/decode/{model}/{src}-{tgt}/{split}.log",
    benchmark:
        "benchmarks/decode/{model}/{src}-{tgt}/{split}.tsv"
    priority: 9
    conda:
        "../../envs/caspes.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=120,
    params:
        task=get_task,
        options=DECODE_SETTINGS,
    script:
        "../scripts/decode.py"


rule quality_table:
    input:
        decode_outputs("quality.tsv"),
    output:
        "results/quality.tsv",
    log:
        "logs/quality_table/quality.log",
    localrule: True
    conda:
        "../../envs/caspes.yaml"
    script:
        "../scripts/quality_table.py"
