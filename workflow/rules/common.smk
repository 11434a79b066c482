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


wildcard_constraints:
    corpus=CORPUS,
    lang="|".join(LANGS),
    split="|".join(SPLITS),
    tokenizer="|".join(TOKENIZERS) if TOKENIZERS else "(?!)",


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


def get_final_output():
    return data_outputs()


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
