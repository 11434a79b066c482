"""Configuration checks that a JSON schema cannot express (keys that must agree with each other).

The workflow first validates the config against the package's ``config.schema.yaml`` (shipped as
package data next to this module, found through :mod:`importlib.resources`: types, defaults,
unknown keys), then calls :func:`check_config`. Both raise before any job runs, with
the offending key in the message.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators

__all__ = ["SCHEMA_PATH", "ConfigError", "check_config", "load_config"]

SCHEMA_PATH = Path(str(resources.files("caspes.core").joinpath("config.schema.yaml")))


class ConfigError(ValueError):
    """A configuration value that is wrong; the message names the key."""


def check_config(config: Mapping[str, Any]) -> None:
    """Cross-key checks on a schema-validated config (defaults already filled)."""
    data = config["data"]
    langs = data["languages"]
    for lang in langs:
        if lang not in data["translation"]:
            raise ConfigError(f"data.translation: no target language for source language '{lang}'")
    all_langs = set(langs) | {data["translation"][lang] for lang in langs}
    source = data["source"]
    if source == "synthetic":
        syn = data["synthetic"]
        for lang in langs:
            if lang not in ("en", "it"):
                raise ConfigError(f"data.languages: the synthetic corpus speaks en and it, not '{lang}'")
            if not syn["voices"].get(lang):
                raise ConfigError(f"data.synthetic.voices.{lang}: no espeak-ng voice for this language")
        for split in data["splits"]:
            if split not in syn["sizes"]:
                raise ConfigError(f"data.synthetic.sizes.{split}: no size for split '{split}'")
    elif source == "europarl_st":
        if not data["europarl_st"]["root"]:
            raise ConfigError(
                "data.europarl_st.root: set it to the EuroParl-ST v1.1 folder (data.source is europarl_st)"
            )
    elif source == "manifest":
        for lang in langs:
            for split in data["splits"]:
                if split not in data["manifests"].get(lang, {}):
                    raise ConfigError(
                        f"data.manifests.{lang}.{split}: no manifest given for this language and split"
                    )
    for name, tok in config["tokenizers"].items():
        unknown = [lang for lang in tok["languages"] if lang not in all_langs]
        if unknown:
            raise ConfigError(
                f"tokenizers.{name}.languages: {unknown} not among the corpus languages {sorted(all_langs)}"
            )
    for name, model in config.get("models", {}).items():
        key = f"models.{name}"
        if model.get("source", "caspes") == "huggingface":
            if not model.get("path"):
                raise ConfigError(f"{key}.path: a huggingface model needs the path of its local folder")
            continue  # checked against its folder by caspes.hf.card.check_hf_entry
        for field in ("tokenizer", "dims", "stages"):
            if field not in model:
                raise ConfigError(f"{key}.{field}: required for a model trained here (source: caspes)")
        for field in ("path", "trust_remote_code", "prompt", "subsampling", "attn_implementation"):
            if field in model:
                raise ConfigError(f"{key}.{field}: only for 'source: huggingface' models")
        if model["tokenizer"] not in config["tokenizers"]:
            raise ConfigError(f"{key}.tokenizer: '{model['tokenizer']}' is not a key of 'tokenizers'")
        tok_langs = set(config["tokenizers"][model["tokenizer"]]["languages"])
        for lang in model["languages"]:
            if lang not in langs:
                raise ConfigError(f"{key}.languages: '{lang}' is not among data.languages {langs}")
            needed = {lang} | ({data["translation"][lang]} if "st" in model["tasks"] else set())
            if not needed <= tok_langs:
                raise ConfigError(
                    f"{key}.tokenizer: '{model['tokenizer']}' lacks language(s) {sorted(needed - tok_langs)}"
                )
        stages = list(model["stages"])
        if stages[0] != "asr":
            raise ConfigError(f"{key}.stages: the first stage must be 'asr', got {stages}")
        if "st" in model["tasks"] and "asr_st" not in stages:
            raise ConfigError(f"{key}.stages: a model with task 'st' needs an 'asr_st' stage")
        if "st" not in model["tasks"] and "asr_st" in stages:
            raise ConfigError(f"{key}.tasks: stage 'asr_st' trains translation; add 'st' to tasks")
        last = {**config.get("training", {}), **model["stages"][stages[-1]]}
        keep_last = last.get("keep_last", 5)
        if model["average_last"] > keep_last:
            raise ConfigError(
                f"{key}.average_last: {model['average_last']} > keep_last {keep_last} of its last stage"
            )
        if not {"train", "dev"} <= set(data["splits"]):
            raise ConfigError(f"data.splits: training model '{name}' needs 'train' and 'dev' splits")
    for split in config.get("decoding", {}).get("splits", []):
        if config.get("models") and split not in data["splits"]:
            raise ConfigError(f"decoding.splits: '{split}' is not among data.splits {data['splits']}")
    explain = config.get("explain", {})
    decoded = config.get("decoding", {}).get("splits", [])
    for split, models in explain.get("splits", {}).items():
        if split not in decoded:
            raise ConfigError(f"explain.splits: '{split}' is not decoded (decoding.splits {decoded})")
        unknown = [] if models == "all" else [m for m in models if m not in config.get("models", {})]
        if unknown:
            raise ConfigError(f"explain.splits.{split}: unknown model(s) {unknown}")
    analysis = config.get("analysis", {})
    model = analysis.get("ablation_model")
    if model is not None and config.get("models"):
        split = analysis.get("ablation_split", "dev")
        chosen = explain.get("splits", {}).get(split)
        if model not in config["models"]:
            raise ConfigError(f"analysis.ablation_model: unknown model '{model}'")
        if chosen is None or (chosen != "all" and model not in chosen):
            raise ConfigError(
                f"analysis.ablation_model: '{model}' must be explained on '{split}' "
                f"(add it to explain.splits.{split}, or set analysis.ablation_model: null)"
            )
    main = analysis.get("split", "test")
    if config.get("models") and main not in explain.get("splits", {}):
        raise ConfigError(
            f"analysis.split: '{main}' is not explained (explain.splits {list(explain.get('splits', {}))})"
        )
    figure = analysis.get("figure_model")
    if figure is not None and config.get("models") and figure not in config["models"]:
        raise ConfigError(f"analysis.figure_model: unknown model '{figure}'")
    if "train" not in data["splits"] and config["tokenizers"]:
        raise ConfigError("data.splits: tokenizers are trained on the 'train' split, which is not listed")


def _validator_filling_defaults(schema: Mapping[str, Any]):
    """A Draft 2020-12 validator that also writes each missing property's default into the instance."""

    check_properties = Draft202012Validator.VALIDATORS["properties"]

    def properties(validator, props, instance, schema):
        if isinstance(instance, dict):
            for name, sub in props.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from check_properties(validator, props, instance, schema)

    return validators.extend(Draft202012Validator, {"properties": properties})(schema)


def load_config(path: str | Path, schema_path: str | Path = SCHEMA_PATH) -> dict[str, Any]:
    """Read a YAML config, fill schema defaults, validate, and run :func:`check_config`.

    The same steps the Snakefile runs (there through Snakemake's ``validate``), for use outside
    Snakemake: tests, notebooks. Schema violations raise ConfigError naming the key path.
    """

    with open(path, encoding="utf-8") as f:
        config = yaml.safe_load(f) or {}
    with open(schema_path, encoding="utf-8") as f:
        schema = yaml.safe_load(f)
    errors = sorted(_validator_filling_defaults(schema).iter_errors(config), key=lambda e: list(e.path))
    if errors:
        err = errors[0]
        key = ".".join(str(p) for p in err.path) or "<top level>"
        raise ConfigError(f"{path}: {key}: {err.message}")
    check_config(config)
    return config
