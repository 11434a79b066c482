# The user's own Hugging Face models (models.<name>.source: huggingface): instead of training, a
# model card (the checked entry + sha256 of every file of the folder) and the model's own features
# and their SLIC segmentations; decoding and everything after it are the rules every model runs.


if HF_CARDS:

    rule model_card:
        input:
            get_hf_folder_files,
        output:
            "results/{model}/model.json",
        log:
            "logs/model_card/{model}.log",
        wildcard_constraints:
            model="|".join(HF_CARDS),
        localrule: True
        conda:
            "../../envs/caspes.yaml"
        params:
            card=get_hf_card,
        script:
            "../scripts/model_card.py"

    rule model_features:
        input:
            card="results/{model}/model.json",
            manifest=f"results/data/{CORPUS}/{{lang}}/{{split}}.tsv",
        output:
            archive="results/{model}/features/{lang}/{split}.zip",
            manifest="results/{model}/features/{lang}/{split}.tsv",
        log:
            "logs/model_features/{model}/{lang}/{split}.log",
        benchmark:
            "benchmarks/model_features/{model}/{lang}/{split}.tsv"
        wildcard_constraints:
            model="|".join(HF_CARDS),
        conda:
            "../../envs/caspes.yaml"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=60,
        script:
            "../scripts/model_features.py"

    rule segment_model_features:
        input:
            manifest="results/{model}/features/{lang}/{split}.tsv",
        output:
            "results/{model}/features/{lang}/{split}.segments.zip",
        log:
            "logs/segment_model_features/{model}/{lang}/{split}.log",
        benchmark:
            "benchmarks/segment_model_features/{model}/{lang}/{split}.tsv"
        wildcard_constraints:
            model="|".join(HF_CARDS),
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
