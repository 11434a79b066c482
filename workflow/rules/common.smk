# Config validation, wildcard constraints and input functions. No rules here.

import sys
from pathlib import Path

from snakemake.utils import validate

validate(config, "../schemas/config.schema.yaml")

sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from caspes.config import check_config  # noqa: E402

check_config(config)

DATA = config["data"]
CORPUS = DATA["corpus"]
LANGS = DATA["languages"]
SPLITS = DATA["splits"]
TOKENIZERS = list(config["tokenizers"])
MODELS = config["models"]
STAGES = ["asr", "asr_st"]


wildcard_constraints:
    corpus=CORPUS,
    lang="|".join(LANGS),
    split="|".join(SPLITS),
    tokenizer="|".join(TOKENIZERS) if TOKENIZERS else "(?!)",
    model="|".join(MODELS) if MODELS else "(?!)",
    src="|".join(LANGS),
    tgt="|".join(sorted(set(LANGS) | set(DATA["translation"].values()))),
    stage="|".join(STAGES),
    p_h=r"[0-9]*\.?[0-9]+",
    map=r"smx|smh-p[0-9]*\.?[0-9]+",


def data_outputs():
    """Every file of the data stage."""
    return (
        expand(
            "results/data/{corpus}/{lang}/{split}.fbank.tsv",
            corpus=CORPUS,
            lang=LANGS,
            split=SPLITS,
        )
        + expand(
            "results/data/{corpus}/tokenizer/{tokenizer}.model",
            corpus=CORPUS,
            tokenizer=TOKENIZERS,
        )
        + [f"results/data/{CORPUS}/stats.tsv"]
    )


def train_outputs():
    """The final (averaged) checkpoint of every model and its greedy dev-set quality."""
    return expand(
        "results/{model}/train/{name}",
        model=MODELS,
        name=["checkpoint.pt", "greedy_dev.tsv"],
    )


def model_directions(model):
    """(source, target) language pairs a model is decoded on: ASR src-src, ST src-translation."""
    pairs = []
    for lang in MODELS[model]["languages"]:
        if "asr" in MODELS[model]["tasks"]:
            pairs.append((lang, lang))
        if "st" in MODELS[model]["tasks"]:
            pairs.append((lang, DATA["translation"][lang]))
    return pairs


def decode_outputs(name):
    """One decode output file per model, direction and decoded split."""
    return [
        f"results/{model}/{src}-{tgt}/{split}/{name}"
        for model in MODELS
        for src, tgt in model_directions(model)
        for split in config["decoding"]["splits"]
    ]


def get_final_output():
    outputs = data_outputs() + train_outputs()
    if MODELS:
        outputs += ["results/quality.tsv"]
    return outputs + explain_outputs()


def tokenizer_train_manifests(wildcards):
    """Train manifests of every source language whose transcript or translation is in the set."""
    langs = config["tokenizers"][wildcards.tokenizer]["languages"]
    return [
        f"results/data/{wildcards.corpus}/{src}/train.tsv"
        for src in LANGS
        if src in langs or DATA["translation"][src] in langs
    ]


def manifest_source(wildcards):
    """The user's manifest for data.source == 'manifest'."""
    return DATA["manifests"][wildcards.lang][wildcards.split]


def corpus_dir(wildcards):
    return f"results/data/{wildcards.corpus}"


def get_tgt_lang(wildcards):
    """Translation language of a source language."""
    return DATA["translation"][wildcards.lang]


def tokenizer_setting(key):
    """Input function for one setting of the tokenizer named by the wildcard."""

    def get(wildcards):
        return config["tokenizers"][wildcards.tokenizer][key]

    return get


def get_model_manifests(split):
    """Input function: the feature manifests of a split in every language of the model."""

    def get(wildcards):
        langs = MODELS[wildcards.model]["languages"]
        return [f"results/data/{CORPUS}/{lang}/{split}.fbank.tsv" for lang in langs]

    return get


def get_model_tokenizer(wildcards):
    return (
        f"results/data/{CORPUS}/tokenizer/{MODELS[wildcards.model]['tokenizer']}.model"
    )


def model_stages(model):
    """Training stages of a model, in order."""
    return [s for s in STAGES if s in MODELS[model]["stages"]]


def get_init_checkpoint(wildcards):
    """A later stage starts from the weights of the stage before it."""
    stages = model_stages(wildcards.model)
    if wildcards.stage not in stages:
        raise ValueError(
            f"models.{wildcards.model}.stages has no stage '{wildcards.stage}'"
        )
    i = stages.index(wildcards.stage)
    return (
        []
        if i == 0
        else [f"results/{wildcards.model}/train/{stages[i - 1]}/checkpoint_last.pt"]
    )


def get_model_dims(wildcards):
    return dict(MODELS[wildcards.model]["dims"])


def get_train_settings(wildcards):
    """TrainConfig fields of one stage: shared 'training' settings, the stage's overrides, seed, stage."""
    return {
        **config["training"],
        **MODELS[wildcards.model]["stages"][wildcards.stage],
        "seed": config["seed"],
        "stage": wildcards.stage,
    }


def get_final_stage_dir(wildcards):
    return f"results/{wildcards.model}/train/{model_stages(wildcards.model)[-1]}"


def get_final_stage_checkpoint(wildcards):
    return f"{get_final_stage_dir(wildcards)}/checkpoint_last.pt"


def get_average_last(wildcards):
    return MODELS[wildcards.model]["average_last"]


def get_model_languages(wildcards):
    return MODELS[wildcards.model]["languages"]


def get_model_tasks(wildcards):
    return MODELS[wildcards.model]["tasks"]


def get_task(wildcards):
    return "asr" if wildcards.src == wildcards.tgt else "st"


def get_decode_manifest(wildcards):
    """The features of the source language; the direction must be one the model was trained for."""
    if (wildcards.src, wildcards.tgt) not in model_directions(wildcards.model):
        raise ValueError(
            f"model '{wildcards.model}' is not trained for {wildcards.src}-{wildcards.tgt} "
            f"(directions: {model_directions(wildcards.model)})"
        )
    return f"results/data/{CORPUS}/{wildcards.src}/{wildcards.split}.fbank.tsv"


# --------------------------------------------------------------------------- explain
EXPLAIN = config["explain"]
P_H = f"{EXPLAIN['encoder']['p']:g}"


def explained_sets():
    """(model, src, tgt, split) of every explained decoding, as explain.splits asks."""
    sets = []
    for split, models in EXPLAIN["splits"].items():
        for model in MODELS if models == "all" else models:
            sets += [(model, src, tgt, split) for src, tgt in model_directions(model)]
    return sets


def explained_maps():
    """The saliency stores of the study: SM^X and SM^H at the configured p_H."""
    return ["smx", f"smh-p{P_H}"]


def explain_outputs():
    """Every saliency store with its deletion curve and size score, and the summary table."""
    if not MODELS:
        return []
    files = [
        f"results/{model}/{src}-{tgt}/{split}/{kind}/{name}"
        for model, src, tgt, split in explained_sets()
        for m in explained_maps()
        for kind, name in [
            ("saliency", f"{m}.zip"),
            ("deletion", f"{m}.tsv"),
            ("size", f"{m}.tsv"),
        ]
    ]
    return files + ["results/explanations.tsv"]


def get_segments(wildcards):
    return f"results/data/{CORPUS}/{wildcards.src}/{wildcards.split}.segments.zip"


def get_map_kind(wildcards):
    """'input' for smx, 'encoder' for smh-p<p>."""
    return "input" if wildcards.map == "smx" else "encoder"


def get_occlusion_settings(kind):
    """Input function: OcclusionOptions fields of SM^X ('input') or SM^H ('encoder')."""

    def get(wildcards):
        section = EXPLAIN[kind]
        p = section["p"] if kind == "input" else float(wildcards.p_h)
        return {
            "n_masks": section["n_masks"],
            "p": p,
            "seed": config["seed"],
            "batch_size": EXPLAIN["batch_size"],
            "batch_frames": EXPLAIN["batch_frames"],
            "autocast_bf16": EXPLAIN["bf16"],
        }

    return get
