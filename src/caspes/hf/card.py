"""A Hugging Face model entry of the config, checked against its local folder (torch-free).

The workflow parses the config (and every SLURM job re-parses it), so nothing here imports torch or
transformers: the checks read the folder's ``config.json`` and ``tokenizer_config.json`` only.

Config entry (``models.<name>``)::

    source: huggingface
    path: /models/whisper-small       # config.json, weights, processor / tokenizer files
    languages: [en]                   # source languages decoded (data.languages)
    tasks: [asr]                      # asr, st (Whisper translates into English only)
    trust_remote_code: false          # models whose config.json names its own code (auto_map)
    prompt: null                      # forced decoder prompt; null = the model type's default
    subsampling: null                 # input frames per encoder step; null = from config.json

The prompt is a list of token templates with ``{src}``, ``{tgt}`` (language codes) and ``{task}``
(``transcribe`` for ASR, ``translate`` for ST). Defaults: Whisper
``[<|{src}|>, <|{task}|>, <|notimestamps|>]`` (after ``<|startoftranscript|>``); Speech2Text
``[<lang:{tgt}>]`` when its tokenizer has language codes, else none (after ``</s>``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from caspes.core.atomic import atomic_write_text, sha256_file
from caspes.core.config import ConfigError

__all__ = [
    "KNOWN_TYPES",
    "is_hf_entry",
    "hf_folder_files",
    "check_hf_entry",
    "default_prompt",
    "subsampling_factor",
    "write_model_card",
    "read_model_card",
]

# model_type -> what the adapter needs to know about it
KNOWN_TYPES: dict[str, dict[str, Any]] = {
    "whisper": {"fixed_window": True, "utterance_normalised": False},
    "speech_to_text": {"fixed_window": False, "utterance_normalised": True},
}

WEIGHT_NAMES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def is_hf_entry(entry: Mapping[str, Any]) -> bool:
    return entry.get("source", "caspes") == "huggingface"


def _read_json(path: Path, key: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{key}: cannot read {path}: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{key}: {path} is not a JSON object")
    return data


def hf_folder_files(path: str | Path) -> list[str]:
    """Every regular file of a model folder (sorted; hidden files and sub-folders left out)."""
    folder = Path(path)
    return sorted(str(p) for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def _tokenizer_config(folder: Path) -> dict[str, Any]:
    path = folder / "tokenizer_config.json"
    return _read_json(path, "tokenizer_config.json") if path.is_file() else {}


def default_prompt(model_type: str, folder: str | Path) -> list[str]:
    """The prompt templates a model type is decoded with when the entry sets none."""
    if model_type == "whisper":
        return ["<|{src}|>", "<|{task}|>", "<|notimestamps|>"]
    if model_type == "speech_to_text" and _tokenizer_config(Path(folder)).get("lang_codes"):
        return ["<lang:{tgt}>"]
    return []


def subsampling_factor(config_json: Mapping[str, Any], entry: Mapping[str, Any], key: str) -> int:
    """Input frames per encoder step: Whisper 2 (its second convolution's stride), Speech2Text
    ``2 ** num_conv_layers``; any other model needs ``subsampling`` in its entry."""
    if entry.get("subsampling"):
        return int(entry["subsampling"])
    model_type = config_json.get("model_type")
    if model_type == "whisper":
        return 2
    if model_type == "speech_to_text":
        return 2 ** int(config_json.get("num_conv_layers", 2))
    raise ConfigError(
        f"{key}.subsampling: model_type '{model_type}' is not one caspes knows "
        f"({sorted(KNOWN_TYPES)}); set the input frames per encoder step"
    )


def check_hf_entry(name: str, entry: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, Any]:
    """Check one ``source: huggingface`` entry before any job runs; return what the card holds.

    Raises :class:`ConfigError` naming the config key and the path for: a path that is not a
    folder or has no ``config.json`` or no weights; a model that is not a speech encoder-decoder; a
    model whose ``config.json`` asks for its own code (``auto_map``) without ``trust_remote_code``;
    an ``attn_implementation`` other than eager (only eager attention returns cross-attention).
    """
    key = f"models.{name}"
    for field in ("tokenizer", "dims", "stages"):
        if field in entry:
            raise ConfigError(f"{key}.{field}: a huggingface model is not trained here; remove this key")
    folder = Path(str(entry["path"])).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"{key}.path: {folder} is not a folder")
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise ConfigError(f"{key}.path: {folder} has no config.json (a Hugging Face model folder)")
    cfg = _read_json(cfg_path, f"{key}.path")
    if not any((folder / w).is_file() for w in WEIGHT_NAMES):
        raise ConfigError(f"{key}.path: {folder} has no weights ({', '.join(WEIGHT_NAMES)})")
    if entry.get("attn_implementation", "eager") != "eager":
        raise ConfigError(
            f"{key}.attn_implementation: '{entry['attn_implementation']}' does not return "
            "cross-attention weights; only 'eager' does"
        )
    model_type = cfg.get("model_type")
    remote = "auto_map" in cfg
    if remote and not entry.get("trust_remote_code", False):
        raise ConfigError(
            f"{key}.trust_remote_code: {cfg_path} names its own model code (auto_map); "
            "set trust_remote_code: true to run it"
        )
    if not cfg.get("is_encoder_decoder", False):
        raise ConfigError(
            f"{key}.path: {cfg_path} is not an encoder-decoder model (model_type '{model_type}', "
            "is_encoder_decoder not true); caspes explains speech encoder-decoders"
        )
    if model_type not in KNOWN_TYPES and not remote:
        raise ConfigError(
            f"{key}.path: {cfg_path} has model_type '{model_type}', not a speech-to-text "
            f"encoder-decoder caspes supports ({sorted(KNOWN_TYPES)}, or trust_remote_code models)"
        )
    for lang in entry["languages"]:
        if lang not in data["languages"]:
            raise ConfigError(f"{key}.languages: '{lang}' is not among data.languages {data['languages']}")
    if model_type == "whisper" and "st" in entry["tasks"]:
        bad = [lang for lang in entry["languages"] if data["translation"][lang] != "en"]
        if bad:
            raise ConfigError(
                f"{key}.tasks: Whisper translates into English only; data.translation sends {bad} elsewhere"
            )
    prompt = entry.get("prompt")
    if prompt is None:
        prompt = default_prompt(str(model_type), folder)
    for k, template in enumerate(prompt):
        try:
            template.format(src="xx", tgt="xx", task="transcribe")
        except (KeyError, IndexError, ValueError) as err:
            raise ConfigError(
                f"{key}.prompt[{k}]: '{template}' may use only {{src}}, {{tgt}} and {{task}} ({err})"
            ) from None
    kind = dict(KNOWN_TYPES.get(str(model_type), {"fixed_window": False, "utterance_normalised": False}))
    return {
        "source": "huggingface",
        "name": name,
        "path": str(folder.resolve()),
        "model_type": model_type,
        "languages": list(entry["languages"]),
        "tasks": list(entry["tasks"]),
        "prompt": list(prompt),
        "trust_remote_code": bool(entry.get("trust_remote_code", False)),
        "subsampling": subsampling_factor(cfg, entry, key),
        **kind,
    }


def write_model_card(info: Mapping[str, Any], files: Sequence[str | Path], out_path: str | Path) -> dict:
    """The model card: the checked entry plus the sha256 of every file of the folder (so that the
    card changes, and what depends on it reruns, when the weights or the processor change)."""
    card = {**info, "files": {Path(f).name: sha256_file(f) for f in sorted(map(str, files))}}
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_path, json.dumps(card, indent=1, sort_keys=True) + "\n")
    return card


def read_model_card(path: str | Path) -> dict[str, Any]:
    card = _read_json(Path(path), str(path))
    if card.get("source") != "huggingface" or "path" not in card:
        raise ConfigError(f"{path}: not a caspes model card (source: huggingface)")
    return card
