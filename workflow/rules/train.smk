# Stage 2: train every model (one job per training stage), then average its last checkpoints.


rule train_model:
    input:
        train=get_model_manifests("train"),
        dev=get_model_manifests("dev"),
        tokenizer=get_model_tokenizer,
        init=get_init_checkpoint,
    output:
        checkpoint="results/{model}/train/{stage}/checkpoint_last.pt",
    log:
        "logs/train_model/{model}/{stage}.log",
    benchmark:
        "benchmarks/train_model/{model}/{stage}.tsv"
    priority: get_train_priority
    conda:
        "../../envs/caspes.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=720,
    params:
        dims=get_model_dims,
        settings=get_train_settings,
        out_dir=subpath(output.checkpoint, parent=True),
    script:
        "../scripts/train_model.py"


rule average_checkpoints:
    input:
        get_final_stage_checkpoint,
    output:
        "results/{model}/train/checkpoint.pt",
    log:
        "logs/average_checkpoints/{model}.log",
    benchmark:
        "benchmarks/average_checkpoints/{model}.tsv"
    priority: 9
    conda:
        "../../envs/caspes.yaml"
    params:
        stage_dir=get_final_stage_dir,
        k=get_average_last,
    script:
        "../scripts/average_checkpoints.py"


rule evaluate_greedy:
    input:
        checkpoint="results/{model}/train/checkpoint.pt",
        tokenizer=get_model_tokenizer,
        manifests=get_model_manifests("dev"),
    output:
        quality="results/{model}/train/greedy_dev.tsv",
        hyps="results/{model}/train/greedy_dev_hyps.tsv",
    log:
        "logs/evaluate_greedy/{model}.log",
    benchmark:
        "benchmarks/evaluate_greedy/{model}.tsv"
    conda:
        "../../envs/caspes.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=60,
    params:
        langs=get_model_languages,
        tasks=get_model_tasks,
    script:
        "../scripts/evaluate_greedy.py"
