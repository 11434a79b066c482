"""Tiny, randomly initialised Hugging Face speech models built offline (tests, CI, trying a setup).

``python -m caspes.hf.tiny OUT`` writes ``OUT/whisper`` (``WhisperForConditionalGeneration`` with a
byte-level BPE tokenizer carrying Whisper's special tokens for en and it, a 10 s input window) and
``OUT/speech2text`` (``Speech2TextForConditionalGeneration`` with a SentencePiece tokenizer trained
here on a fixed English text). Both are folders as ``save_pretrained`` writes them, loadable with
``local_files_only=True``; nothing is downloaded. The weights are random (seeded): the models decode
nonsense, which is all a test of the machinery needs.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

__all__ = ["build_tiny_whisper", "build_tiny_speech2text", "main"]

WHISPER_SPECIALS = [
    "<|startoftranscript|>",
    "<|en|>",
    "<|it|>",
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nospeech|>",
    "<|notimestamps|>",
]
TEXT = [
    "the quick brown fox jumps over the lazy dog",
    "she sells sea shells by the sea shore",
    "one two three four five six seven eight nine ten",
    "a house a garden a tree a river and a bridge",
]
SMALL = dict(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
             decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64)  # fmt: skip


def _byte_alphabet() -> list[str]:
    """The 256 printable characters byte-level BPE maps the bytes to (GPT-2's table)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def build_tiny_whisper(out: str | Path, seed: int = 0, chunk_seconds: int = 10) -> Path:
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )

    out = Path(out)
    vocab = {c: i for i, c in enumerate(_byte_alphabet())}
    merges = [("t", "h"), ("th", "e"), ("Ġ", "a"), ("Ġ", "th"), ("e", "r"), ("i", "n")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    tok = WhisperTokenizer(vocab=vocab, merges=merges)
    tok.add_special_tokens({"additional_special_tokens": WHISPER_SPECIALS})
    ids = tok.convert_tokens_to_ids
    extractor = WhisperFeatureExtractor(feature_size=80, chunk_length=chunk_seconds)
    eot = ids("<|endoftext|>")
    config = WhisperConfig(
        vocab_size=len(tok), num_mel_bins=80, max_source_positions=extractor.nb_max_frames // 2,
        max_target_positions=128, pad_token_id=eot, bos_token_id=eot, eos_token_id=eot,
        decoder_start_token_id=ids("<|startoftranscript|>"), **SMALL,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config)
    model.generation_config.forced_decoder_ids = None
    model.save_pretrained(out)
    WhisperProcessor(feature_extractor=extractor, tokenizer=tok).save_pretrained(out)
    return out


def build_tiny_speech2text(out: str | Path, seed: int = 0, vocab_size: int = 48) -> Path:
    import sentencepiece as spm
    from transformers import (
        Speech2TextConfig,
        Speech2TextFeatureExtractor,
        Speech2TextForConditionalGeneration,
        Speech2TextProcessor,
        Speech2TextTokenizer,
    )

    out = Path(out)
    with tempfile.TemporaryDirectory() as tmp:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(TEXT * 10), model_prefix=f"{tmp}/sp", vocab_size=vocab_size,
            model_type="unigram", bos_id=0, pad_id=1, eos_id=2, unk_id=3, hard_vocab_limit=False,
            minloglevel=2,
        )  # fmt: skip
        sp = spm.SentencePieceProcessor(model_file=f"{tmp}/sp.model")
        (Path(tmp) / "vocab.json").write_text(json.dumps({sp.id_to_piece(i): i for i in range(len(sp))}))
        tok = Speech2TextTokenizer(vocab_file=f"{tmp}/vocab.json", spm_file=f"{tmp}/sp.model")
        extractor = Speech2TextFeatureExtractor(feature_size=80, num_mel_bins=80)
        config = Speech2TextConfig(
            vocab_size=len(tok), conv_channels=32, input_feat_per_channel=80,
            max_source_positions=1500, max_target_positions=128, **SMALL,
        )  # fmt: skip
        torch.manual_seed(seed)
        Speech2TextForConditionalGeneration(config).save_pretrained(out)
        Speech2TextProcessor(feature_extractor=extractor, tokenizer=tok).save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="folder to write whisper/ and speech2text/ into")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for path in (
        build_tiny_whisper(Path(args.out) / "whisper", args.seed),
        build_tiny_speech2text(Path(args.out) / "speech2text", args.seed),
    ):
        print(path)


if __name__ == "__main__":
    main()
