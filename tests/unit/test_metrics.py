"""Unit tests for caspes.metrics."""

from __future__ import annotations

import logging

import pytest

from caspes.decode.metrics import bleu, chrf, normalizer_for, quality_row, wer, wer_details, wer_max


def test_normalizers() -> None:
    from whisper_normalizer.basic import BasicTextNormalizer
    from whisper_normalizer.english import EnglishTextNormalizer

    assert isinstance(normalizer_for("en"), EnglishTextNormalizer)
    assert isinstance(normalizer_for("it"), BasicTextNormalizer)
    assert normalizer_for("en")("Hello, World!") == "hello world"
    assert normalizer_for("it")("Ciao, Mondo!").split() == ["ciao", "mondo"]


def test_wer_hand_computed() -> None:
    assert wer(["the cat sat up"], ["the cat sat down"], "en") == pytest.approx(25.0)
    # corpus level: (0 + 2 deletions) / (4 + 2) reference words
    assert wer(["a b c d", ""], ["a b c d", "e f"], "it") == pytest.approx(100 * 2 / 6)
    # one insertion on a one-word reference
    assert wer(["yes yes"], ["yes"], "en") == pytest.approx(100.0)
    d = wer_details(["the dog sat up there"], ["the cat sat down"], "en")
    assert (d.substitutions, d.deletions, d.insertions, d.ref_words, d.n) == (2, 0, 1, 4, 1)
    assert d.wer == pytest.approx(75.0)


def test_wer_ignores_case_and_punctuation() -> None:
    assert wer(["Hello, World!"], ["hello world"], "en") == 0.0
    assert wer(["Ciao, Mondo!"], ["ciao mondo"], "it") == 0.0
    # English normaliser also standardises contractions
    assert wer(["it's fine"], ["it is fine"], "en") == 0.0


def test_wer_skips_and_counts_empty_references(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="caspes.decode.metrics"):
        score = wer(["anything", "a b"], ["!!", "a b"], "en")
    assert score == 0.0
    assert "skipped 1 of 2" in caplog.text
    d = wer_details(["anything", "a b"], ["!!", "a b"], "en")
    assert (d.n, d.n_empty_ref) == (1, 1)
    only_empty = wer_details(["x"], [""], "en")
    assert (only_empty.wer, only_empty.n, only_empty.n_empty_ref) == (0.0, 0, 1)


def test_wer_max_fairseq_style_and_clipped() -> None:
    # case and punctuation count (no normalisation)
    assert wer_max(["The cat"], ["the cat"]) == pytest.approx(50.0)
    assert wer_max(["the cat."], ["the cat"]) == pytest.approx(50.0)
    assert wer_max(["the cat"], ["the cat"]) == 0.0
    # whitespace tokens only: extra spaces do not matter
    assert wer_max(["  the   cat "], ["the cat"]) == 0.0
    # long hallucination: raw corpus WER would be 2500 %, clipped at 100
    assert wer_max(["x " * 50], ["a b"]) == 100.0
    # corpus aggregation: sum of distances / sum of reference words (empty refs count)
    assert wer_max(["a b c d", "x y"], ["a b c d", ""]) == pytest.approx(50.0)
    assert wer_max(["a b c x", "e f"], ["a b c d", "e f g h"]) == pytest.approx(100 * 3 / 8)
    assert wer_max([""], [""]) == 0.0
    assert wer_max(["a"], [""]) == 100.0
    # deleting everything is exactly 100
    assert wer_max(["", ""], ["a b", "c"]) == 100.0


def test_bleu_and_chrf() -> None:
    refs = ["the quick brown fox jumps over the lazy dog", "il gatto dorme sul divano rosso"]
    assert bleu(refs, refs) == pytest.approx(100.0)
    assert chrf(refs, refs) == pytest.approx(100.0)
    hyps = ["the quick brown fox jumped over a lazy dog", "il cane dorme sul divano"]
    assert 0.0 < bleu(hyps, refs) < 100.0
    assert 0.0 < chrf(hyps, refs) < 100.0
    # cased by default
    upper = [r.upper() for r in refs]
    assert bleu(upper, refs) < 100.0


def test_length_mismatch_raises() -> None:
    for fn in (bleu, chrf, wer_max):
        with pytest.raises(ValueError):
            fn(["a"], ["a", "b"])
    with pytest.raises(ValueError):
        wer(["a"], [], "en")
    with pytest.raises(TypeError):
        bleu("a b", "a b")  # type: ignore[arg-type]


def test_quality_row() -> None:
    row = quality_row("asr", "en-en", ["the cat sat up", "x"], ["the cat sat down", "?"], "en")
    assert row == {"task": "asr", "lang_pair": "en-en", "n": 2, "wer": pytest.approx(25.0), "n_empty_ref": 1}
    refs = ["il gatto dorme sul divano rosso"]
    row = quality_row("st", "en-it", refs, refs, "it")
    assert set(row) == {"task", "lang_pair", "n", "bleu", "chrf"}
    assert row["n"] == 1 and row["bleu"] == pytest.approx(100.0) and row["chrf"] == pytest.approx(100.0)
    with pytest.raises(ValueError):
        quality_row("mt", "en-it", refs, refs, "it")


def test_comet_needs_a_local_checkpoint_and_the_optional_package(tmp_path, monkeypatch):
    import sys
    import types

    from caspes.core.manifest import DataError
    from caspes.decode.metrics import comet

    with pytest.raises(DataError, match="decoding.comet_checkpoint: .*not found"):
        comet(["a"], ["b"], ["c"], tmp_path / "missing.ckpt")
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"weights")
    monkeypatch.setitem(sys.modules, "comet", None)  # import comet -> ImportError
    with pytest.raises(RuntimeError, match=r"pip install -e '\.\[comet\]'"):
        comet(["a"], ["b"], ["c"], ckpt)

    calls = {}

    class FakeModel:
        def predict(self, data, batch_size, gpus, progress_bar):
            calls["data"], calls["gpus"] = data, gpus
            return types.SimpleNamespace(system_score=0.8125)

    fake = types.ModuleType("comet")
    fake.load_from_checkpoint = lambda path: calls.setdefault("path", path) and FakeModel()
    monkeypatch.setitem(sys.modules, "comet", fake)
    assert comet(["src"], ["mt"], ["ref"], ckpt) == pytest.approx(81.25)
    assert calls["path"] == str(ckpt) and calls["data"] == [{"src": "src", "mt": "mt", "ref": "ref"}]
