"""A Hugging Face model's tokenizer with the interface the study uses on its own
(:class:`caspes.tokenizer.Tokenizer`): pieces, ids, detokenisation, the forced prompt.

Pieces are the tokenizer's own tokens (``convert_ids_to_tokens``: Whisper's byte-level BPE writes a
leading space as ``Ġ``, Speech2Text's SentencePiece as ``▁``); none contains whitespace, so the
study's space-separated ``pieces`` column round-trips. The prompt (:mod:`caspes.hf.card`) is forced
before the generated text; the rows that predict it get the role ``prompt`` and are left out of
every correlation, as our language-tag row is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from caspes.core.config import ConfigError

__all__ = ["HFTokenizer", "word_start_marker"]

PROMPT_ROLE = "prompt"


def word_start_marker(pieces: Sequence[str]) -> str:
    """The character a word-initial piece starts with: ``Ġ`` (byte-level BPE: a space byte) or
    ``▁`` (SentencePiece), whichever more pieces of the vocabulary start with."""
    bpe = sum(p.startswith("Ġ") for p in pieces)
    return "Ġ" if bpe > sum(p.startswith("▁") for p in pieces) else "▁"


class HFTokenizer:
    """Tokenizer of a model card's folder (the ``AutoTokenizer`` :mod:`caspes.hf.loading` loads)."""

    prompt_role = PROMPT_ROLE

    def __init__(self, card: dict[str, Any], tokenizer: Any) -> None:
        self.tok = tokenizer
        self.card = card
        self.path = Path(card["path"])
        self.key = f"models.{card.get('name', '?')}.prompt"
        self.langs = sorted(set(card["languages"]) | set(card.get("targets", [])))
        self.eos_id = int(tokenizer.eos_token_id)
        self._vocab = tokenizer.get_vocab()
        self.special_ids = {int(i) for i in tokenizer.all_special_ids} | {
            int(i) for i in tokenizer.get_added_vocab().values()
        }
        self.special_ids.discard(self.eos_id)
        self.word_start = word_start_marker(list(self._vocab))
        self._prompt_token_ids: set[int] | None = None

    def pieces_to_text(self, pieces: Sequence[str]) -> str:
        """Text of pieces (a word's, for the timestamp analysis), as the tokenizer detokenises."""
        return str(self.tok.convert_tokens_to_string(list(pieces)))

    def __len__(self) -> int:
        return len(self.tok)

    # ------------------------------------------------------------------ pieces
    def id_to_piece(self, i: int) -> str:
        return str(self.tok.convert_ids_to_tokens(int(i)))

    def piece_to_id(self, piece: str) -> int:
        if piece not in self._vocab:
            raise KeyError(f"{self.path}: the tokenizer has no token '{piece}'")
        return int(self._vocab[piece])

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ids; the prompt, EOS and every other special token dropped."""
        text = self.tok.decode(
            [int(i) for i in ids if int(i) not in self.special_ids and int(i) != self.eos_id]
        )
        return " ".join(text.split())

    # ------------------------------------------------------------------ prompt
    def prompt_ids(self, task: str, src: str, tgt: str) -> list[int]:
        """The forced prompt for a direction (templates filled, each one token of the vocabulary)."""
        words = {"src": src, "tgt": tgt, "task": "transcribe" if task == "asr" else "translate"}
        ids = []
        for k, template in enumerate(self.card["prompt"]):
            token = template.format(**words)
            if token not in self._vocab:
                raise ConfigError(
                    f"{self.key}[{k}]: '{token}' (from '{template}') is not a token of {self.path}"
                )
            ids.append(int(self._vocab[token]))
        return ids

    def decoding_prefix(self, task: str, src: str, tgt: str, force_lang_tag: bool) -> list[int]:
        """The prompt is always forced (the model is conditioned on it; ``force_lang_tag`` is ours)."""
        return self.prompt_ids(task, src, tgt)

    def prompt_token_ids(self) -> set[int]:
        """Every id a prompt of this model can hold (the rows predicting them get role ``prompt``)."""
        if self._prompt_token_ids is not None:
            return self._prompt_token_ids
        ids: set[int] = set()
        for task in ("asr", "st"):
            for src in self.langs:
                for tgt in self.langs:
                    try:
                        ids.update(self.prompt_ids(task, src, tgt))
                    except ConfigError:
                        continue
        self._prompt_token_ids = ids
        return ids

    def split_prompt(self, pieces: Sequence[str], where: str = "") -> int:
        """Number of leading pieces that are the prompt (all of them prompt tokens)."""
        prompt = self.prompt_token_ids()
        n = 0
        while n < len(pieces) and pieces[n] in self._vocab and self._vocab[pieces[n]] in prompt:
            n += 1
        if self.card["prompt"] and n == 0:
            raise ValueError(f"{where}: the pieces do not start with the model's prompt: {list(pieces[:4])}")
        return n
