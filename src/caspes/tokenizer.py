"""SentencePiece unigram vocabularies with language tags.

One tokenizer per *language set* (``en`` for the monolingual base model, ``en_it`` for the
multilingual models). The ids of the special symbols follow fairseq's dictionary order, so ids
can be used by the model directly: ``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3, then one
``<lang:xx>`` user symbol per language of the set (always kept whole), then the pieces.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import sentencepiece as spm

from caspes.core.manifest import DataError, read_manifest

__all__ = ["lang_tag", "collect_texts", "train_tokenizer", "train_tokenizer_from_manifests", "Tokenizer"]

log = logging.getLogger(__name__)

BOS_ID, PAD_ID, EOS_ID, UNK_ID = 0, 1, 2, 3


def lang_tag(lang: str) -> str:
    """The target-language tag symbol, e.g. ``<lang:it>``."""
    return f"<lang:{lang}>"


def collect_texts(manifests: Iterable[str | Path], langs: Sequence[str]) -> list[str]:
    """Every transcript and translation in the manifests whose language is in ``langs``.

    A manifest row contributes ``src_text`` if ``src_lang`` is in the set and ``tgt_text`` if
    ``tgt_lang`` is; rows without language columns raise DataError (we cannot tell their language).
    """
    texts: list[str] = []
    for path in manifests:
        for row in read_manifest(path):
            for text_col, lang_col in (("src_text", "src_lang"), ("tgt_text", "tgt_lang")):
                if lang_col not in row or text_col not in row:
                    raise DataError(f"{path}:{row['_line']}: needs columns {text_col} and {lang_col}")
                if row[lang_col] in langs and row[text_col].strip():
                    texts.append(row[text_col].strip())
    return texts


def train_tokenizer(
    texts: Sequence[str],
    model_path: str | Path,
    langs: Sequence[str],
    vocab_size: int,
    character_coverage: float = 1.0,
    seed: int = 1,
) -> int:
    """Train a unigram model on ``texts`` and write ``model_path`` (+ ``.vocab`` beside it).

    ``vocab_size`` is an upper bound: a small corpus may support fewer pieces, in which case the
    model gets as many as the data allows (``hard_vocab_limit=False``). Returns the real size.
    """

    if not texts:
        raise DataError(f"{model_path}: no training text for languages {list(langs)}")
    model_path = Path(model_path)
    if model_path.suffix != ".model":
        raise ValueError(f"tokenizer path must end in .model, got {model_path}")
    model_path.parent.mkdir(parents=True, exist_ok=True)
    spm.set_random_generator_seed(seed)
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=proto,
        model_type="unigram",
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        character_coverage=character_coverage,
        bos_id=BOS_ID,
        pad_id=PAD_ID,
        eos_id=EOS_ID,
        unk_id=UNK_ID,
        bos_piece="<s>",
        pad_piece="<pad>",
        eos_piece="</s>",
        unk_piece="<unk>",
        user_defined_symbols=[lang_tag(lang) for lang in langs],
        num_threads=1,
        input_sentence_size=0,
        shuffle_input_sentence=False,
        minloglevel=2,
    )
    model_path.write_bytes(proto.getvalue())
    tok = Tokenizer(model_path)
    vocab_path = model_path.with_suffix(".vocab")
    vocab_path.write_text(
        "".join(f"{tok.sp.id_to_piece(i)}\t{tok.sp.get_score(i):.6f}\n" for i in range(len(tok))),
        encoding="utf-8",
    )
    log.info("%s: %d pieces from %d texts (languages %s)", model_path, len(tok), len(texts), list(langs))
    return len(tok)


class Tokenizer:
    """A trained SentencePiece model with the project's special ids and language tags."""

    def __init__(self, model_path: str | Path) -> None:

        self.path = Path(model_path)
        if not self.path.is_file():
            raise DataError(f"{self.path}: tokenizer model not found")
        self.sp = spm.SentencePieceProcessor(model_file=str(self.path))
        self.langs = [
            p[len("<lang:") : -1]
            for p in (self.sp.id_to_piece(i) for i in range(len(self)))
            if p.startswith("<lang:") and p.endswith(">")
        ]

    def __len__(self) -> int:
        return self.sp.get_piece_size()

    def lang_id(self, lang: str) -> int:
        if lang not in self.langs:
            raise KeyError(f"{self.path}: no language tag for '{lang}' (has {self.langs})")
        return self.sp.piece_to_id(lang_tag(lang))

    def pieces(self, text: str) -> list[str]:
        return self.sp.encode(text, out_type=str)

    def encode(self, text: str, lang: str | None = None) -> list[int]:
        """Ids of ``text``, preceded by the ``<lang:xx>`` tag when ``lang`` is given (no BOS/EOS)."""
        ids = self.sp.encode(text, out_type=int)
        return ([self.lang_id(lang)] if lang is not None else []) + ids

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ids; BOS/EOS/PAD and language tags are dropped."""
        special = {BOS_ID, PAD_ID, EOS_ID} | {self.lang_id(lang) for lang in self.langs}
        return self.sp.decode([i for i in ids if i not in special])

    # The interface shared with caspes.hf.tokenizer.HFTokenizer (decoding, stores, deletion).
    prompt_role = "lang"

    def id_to_piece(self, i: int) -> str:
        return self.sp.id_to_piece(int(i))

    def piece_to_id(self, piece: str) -> int:
        return self.sp.piece_to_id(piece)

    def decoding_prefix(self, task: str, src: str, tgt: str, force_lang_tag: bool) -> list[int]:
        """The forced start of a target: the target language's tag (``force_lang_tag``) or nothing."""
        return [self.lang_id(tgt)] if force_lang_tag else []

    def prompt_token_ids(self) -> set[int]:
        """Ids that can start a target before the text: the language tags (role ``lang``)."""
        return {self.lang_id(lang) for lang in self.langs}

    def split_prompt(self, pieces: Sequence[str], where: str = "") -> int:
        """Number of leading pieces before the text: 1, the language tag every target starts with."""
        if not pieces or pieces[0] not in {lang_tag(lang) for lang in self.langs}:
            raise ValueError(f"{where}: pieces must start with a language tag, got {list(pieces[:1])}")
        return 1


def train_tokenizer_from_manifests(
    manifests: Iterable[str | Path],
    model_path: str | Path,
    langs: Sequence[str],
    vocab_size: int,
    character_coverage: float,
    seed: int,
) -> int:
    """:func:`train_tokenizer` on every text of ``langs`` in the manifests (:func:`collect_texts`)."""
    texts = collect_texts(manifests, langs)
    return train_tokenizer(
        texts, model_path, langs, vocab_size, character_coverage=character_coverage, seed=seed
    )
