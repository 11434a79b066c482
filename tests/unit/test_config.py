from pathlib import Path

import pytest
import yaml

from caspes.core.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["config.yaml", "configs/ci.yaml", "configs/europarl.yaml"])
def test_shipped_configs_are_valid(name):
    config = load_config(ROOT / name)
    assert config["data"]["max_duration_s"] > 0
    assert config["features"]["num_mel_bins"] == 80


def _write(tmp_path, config):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_defaults_are_filled(tmp_path):
    config = load_config(_write(tmp_path, {}))
    assert config["seed"] == 1
    assert config["data"]["source"] == "synthetic"
    assert config["data"]["synthetic"]["sizes"] == {"train": 4000, "dev": 200, "test": 200}
    assert config["data"]["on_bad_utterance"] == "skip"
    assert config["tokenizers"]["en_it"]["languages"] == ["en", "it"]


def test_misspelt_key_is_rejected_with_its_path(tmp_path):
    with pytest.raises(
        ConfigError, match=r"data\.synthetic: Additional properties are not allowed \('lexicon_fracton'"
    ):
        load_config(_write(tmp_path, {"data": {"synthetic": {"lexicon_fracton": 0.5}}}))
    with pytest.raises(ConfigError, match=r"<top level>: Additional properties are not allowed \('sed'"):
        load_config(_write(tmp_path, {"sed": 3}))


def test_wrong_type_is_rejected_with_its_path(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.max_duration_s: 'long' is not of type 'number'"):
        load_config(_write(tmp_path, {"data": {"max_duration_s": "long"}}))
    with pytest.raises(ConfigError, match=r"data\.on_bad_utterance: 'ignore' is not one of"):
        load_config(_write(tmp_path, {"data": {"on_bad_utterance": "ignore"}}))


MODEL = {
    "tokenizer": "en",
    "languages": ["en"],
    "tasks": ["asr"],
    "dims": {
        "d_model": 8,
        "encoder_layers": 1,
        "decoder_layers": 1,
        "encoder_heads": 2,
        "decoder_heads": 2,
        "encoder_ffn": 8,
        "decoder_ffn": 8,
    },
    "stages": {"asr": {"max_steps": 3}},
}


def test_model_settings_reach_train_config(tmp_path):
    from caspes.train.config import SPECAUGMENT_POLICIES, TrainConfig, split_runtime, stage_settings

    config = load_config(ROOT / "config.yaml")
    training = dict(config["training"])
    policy = SPECAUGMENT_POLICIES[training.pop("specaugment_policy")]  # fills the fields not given
    stages = []
    for name, model in config["models"].items():
        for stage, overrides in model["stages"].items():
            settings = stage_settings(config, name, stage)
            train = TrainConfig.from_dict(settings)
            fields, runtime = split_runtime(settings)  # what the train_model rule gets
            for key, value in {
                **policy,
                **training,
                **overrides,
                "seed": config["seed"],
                "stage": stage,
            }.items():
                assert getattr(train, key) == value, (name, stage, key)
                assert {**fields, **runtime}[key] == value, (name, stage, key)
            stages.append((name, stage))
    assert stages == [
        ("base", "asr"),
        ("small", "asr"),
        ("small", "asr_st"),
        ("large", "asr"),
        ("large", "asr_st"),
    ]


@pytest.mark.parametrize(
    "config, message",
    [
        (
            {"data": {"translation": {"en": "it"}}},
            r"data\.translation: no target language for source language 'it'",
        ),
        ({"data": {"synthetic": {"voices": {"en": ["en-us"]}}}}, r"data\.synthetic\.voices\.it"),
        ({"data": {"synthetic": {"sizes": {"train": 10}}}}, r"data\.synthetic\.sizes\.dev"),
        ({"data": {"source": "europarl_st"}}, r"data\.europarl_st\.root"),
        (
            {"data": {"source": "manifest", "manifests": {"en": {"train": "x.tsv"}}}},
            r"data\.manifests\.en\.dev",
        ),
        ({"tokenizers": {"de": {"languages": ["de"], "vocab_size": 100}}}, r"tokenizers\.de\.languages"),
        ({"data": {"languages": ["fr"], "translation": {"fr": "en"}}}, r"synthetic corpus speaks en and it"),
        ({"models": {"m": {**MODEL, "tokenizer": "xx"}}}, r"models\.m\.tokenizer: 'xx' is not a key"),
        (
            {"models": {"m": {**MODEL, "tasks": ["asr", "st"]}}},
            r"models\.m\.tokenizer: 'en' lacks language\(s\) \['it'\]",
        ),
        (
            {"models": {"m": {**MODEL, "stages": {"asr_st": {}}}}},
            r"models\.m\.stages: the first stage must be 'asr'",
        ),
        (
            {"models": {"m": {**MODEL, "tokenizer": "en_it", "tasks": ["asr", "st"]}}},
            r"models\.m\.stages: a model with task 'st' needs an 'asr_st' stage",
        ),
        ({"models": {"m": {**MODEL, "average_last": 9}}}, r"models\.m\.average_last: 9 > keep_last 5"),
        (
            {"models": {"m": {**MODEL, "dims": {**MODEL["dims"], "d_modell": 3}}}},
            r"models\.m\.dims: Additional properties",
        ),
        (
            {"models": {"m": {**MODEL, "stages": {"asr": {"max_step": 3}}}}},
            r"models\.m\.stages\.asr: Additional properties",
        ),
    ],
)
def test_cross_key_errors(tmp_path, config, message):
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, config))


def test_europarl_config_has_the_papers_model_sizes():
    """configs/europarl.yaml instantiates the paper's three roles (meta device, no memory used)."""
    from caspes.model import PAPER_PARAMETERS, ModelDimensions, count_parameters

    config = load_config(ROOT / "configs" / "europarl.yaml")
    for name, model in config["models"].items():
        vocab = config["tokenizers"][model["tokenizer"]]["vocab_size"]
        n = count_parameters(ModelDimensions.from_dict({**model["dims"], "vocab_size": vocab}))
        print(f"{name}: {n / 1e6:.1f}M parameters (paper {PAPER_PARAMETERS[name] / 1e6:.0f}M)")
        assert abs(n / PAPER_PARAMETERS[name] - 1) <= 0.10


def test_schema_is_package_data_and_declared_for_wheels():
    """The schema sits in the package (found by importlib.resources), and pyproject ships it."""
    import tomllib

    import caspes.core.config as config_module
    from caspes.core.config import SCHEMA_PATH

    assert SCHEMA_PATH.is_file() and SCHEMA_PATH.parent == Path(config_module.__file__).resolve().parent
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert SCHEMA_PATH.name in package_data["caspes.core"]
    assert yaml.safe_load(SCHEMA_PATH.read_text())["type"] == "object"


def test_explain_bf16_takes_true_false_or_auto(tmp_path):
    for value in (True, False, "auto"):
        assert load_config(_write(tmp_path, {"explain": {"bf16": value}}))["explain"]["bf16"] == value
    with pytest.raises(ConfigError, match="explain.*bf16"):
        load_config(_write(tmp_path, {"explain": {"bf16": "fast"}}))
