"""One loader for what a rule's ``checkpoint`` input names: a checkpoint of ours (``.pt``) or the
model card of a Hugging Face model (``model.json``, :mod:`caspes.hf.card`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from caspes.core.config import ConfigError
from caspes.hf.adapter import HFDims, HFSpeechModel
from caspes.hf.card import read_model_card
from caspes.hf.tokenizer import HFTokenizer
from caspes.model.checkpoint import load_model
from caspes.tokenizer import Tokenizer

__all__ = ["is_model_card", "load_hf_model", "load_for_inference", "load_tokenizer_for"]

log = logging.getLogger(__name__)


def is_model_card(path: str | Path) -> bool:
    return Path(path).suffix == ".json"


def load_hf_model(
    card: dict[str, Any], device: torch.device | str = "cpu"
) -> tuple[HFSpeechModel, HFTokenizer]:
    """The adapter and tokenizer of a model card, from its local folder (nothing is downloaded)."""
    from transformers import AutoFeatureExtractor, AutoModelForSpeechSeq2Seq

    path, trust = card["path"], card["trust_remote_code"]
    key = f"models.{card.get('name', '?')}"
    try:
        hf = AutoModelForSpeechSeq2Seq.from_pretrained(
            path, local_files_only=True, trust_remote_code=trust, attn_implementation="eager"
        )
    except (ValueError, OSError, KeyError) as err:
        raise ConfigError(f"{key}.path: {path} does not load as a speech encoder-decoder: {err}") from None
    if getattr(hf.config, "_attn_implementation", "eager") != "eager":
        raise ConfigError(
            f"{key}.path: {path} runs '{hf.config._attn_implementation}' attention, which returns "
            "no cross-attention weights; caspes needs eager attention"
        )
    extractor = AutoFeatureExtractor.from_pretrained(path, local_files_only=True, trust_remote_code=trust)
    tokenizer = HFTokenizer(card, _auto_tokenizer(card))
    cfg = hf.config
    eos = int(cfg.eos_token_id)
    pad = cfg.pad_token_id
    start = int(cfg.decoder_start_token_id)
    pad = start if pad is None or int(pad) == eos else int(pad)
    dims = HFDims(
        n_mels=int(extractor.feature_size),
        vocab_size=int(cfg.vocab_size),
        pad_id=pad,
        eos_id=eos,
        bos_id=eos,
        max_target_positions=int(cfg.max_target_positions),
        decoder_layers=int(cfg.decoder_layers),
        decoder_heads=int(cfg.decoder_attention_heads),
        subsampling=int(card["subsampling"]),
        suppress_ids=tuple(sorted((tokenizer.special_ids | {start, pad}) - {eos})),
        input_frames=2 * int(cfg.max_source_positions) if card.get("fixed_window") else None,
    )
    model = HFSpeechModel(hf, card, dims).to(device).eval()
    log.info(
        "%s: %s, %d parameters, subsampling x%d",
        path,
        type(hf).__name__,
        model.num_parameters(),
        dims.subsampling,
    )
    return model, tokenizer


def load_for_inference(path: str | Path, device: torch.device | str = "cpu") -> tuple[Any, Any]:
    """(model, tokenizer-or-None): our checkpoint (its tokenizer is a separate file: None) or an
    adapted Hugging Face model with its own tokenizer."""
    if is_model_card(path):
        return load_hf_model(read_model_card(path), device)
    model, _ = load_model(path, device)
    return model, None


def load_tokenizer_for(tokenizer_path: str | Path, loaded: Any = None) -> Any:
    """The tokenizer a rule names: the one :func:`load_for_inference` returned for a model card, or
    our SentencePiece model."""
    if loaded is not None:
        return loaded
    if is_model_card(tokenizer_path):
        card = read_model_card(tokenizer_path)
        return HFTokenizer(card, _auto_tokenizer(card))
    return Tokenizer(tokenizer_path)


def _auto_tokenizer(card: dict[str, Any]) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(
        card["path"], local_files_only=True, trust_remote_code=card["trust_remote_code"]
    )
