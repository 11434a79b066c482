"""caspes.analysis.timestamps: word timestamps of stored maps against ground-truth word times."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from caspes.analysis.timestamps import evaluate_timestamps
from caspes.core.manifest import DataError, format_word_times, write_manifest
from caspes.decode.xattn import CrossAttentionStoreWriter

PIECES = ["<lang:en>", "▁the", "▁ca", "t", "▁sat", "</s>"]
ROLES = ["lang", "token", "token", "token", "token", "eos"]
SPANS = [(0, 3), (3, 5), (5, 8), (8, 12)]  # encoder frames of the, ca, t, sat (40 ms each)


def _store(path: Path, noise: float = 0.0) -> None:
    t_enc = 12
    att = np.full((2, 2, len(PIECES), t_enc), 0.01)
    for row, (a, b) in enumerate(SPANS, start=1):
        att[:, :, row, a:b] = 1.0
    att[:, :, 0, :] = att[:, :, -1, :] = 1.0  # tag and EOS rows: attention sinks, dropped before timing
    att += noise * np.random.default_rng(0).random(att.shape)
    att /= att.sum(-1, keepdims=True)
    ids = list(range(len(PIECES)))
    with CrossAttentionStoreWriter(path) as writer:
        writer.add("u1", att, [2, *ids[:-1]], [*ids[:-1], 2], PIECES, ROLES)


def _manifest(path: Path, text: str = "the cat sat", times=((0.0, 0.12), (0.12, 0.32), (0.32, 0.48))) -> None:
    write_manifest(path, [{"id": "u1", "audio": "x.wav", "n_frames": 48, "tgt_text": text, "src_text": text,
                           "word_times": format_word_times(times)}])  # fmt: skip


def test_planted_attention_gives_exact_times(tmp_path: Path) -> None:
    _store(tmp_path / "xattn.zip", noise=0.02)
    _manifest(tmp_path / "m.tsv")
    df = pd.DataFrame(evaluate_timestamps(tmp_path / "xattn.zip", tmp_path / "m.tsv", ca_norm="none"))
    assert set(df["map"]) == {"CA l1", "CA l2", "CA all"} and set(df["method"]) == {
        "dtw",
        "argmax",
        "centroid",
    }
    assert (df["words"] == 3).all()
    dtw = df[df["method"] == "dtw"]
    np.testing.assert_allclose(dtw[["start_ms", "end_ms"]].to_numpy(), 0.0, atol=1e-6)
    assert (dtw["within_50"] == 1.0).all()


def test_only_matching_words_are_scored(tmp_path: Path) -> None:
    _store(tmp_path / "xattn.zip")
    # reference "the dog sat": 'cat' is a substitution, so two words are scored
    _manifest(tmp_path / "m.tsv", "the dog sat")
    df = pd.DataFrame(evaluate_timestamps(tmp_path / "xattn.zip", tmp_path / "m.tsv", ca_norm="none"))
    assert (df["words"] == 2).all()
    assert df[df["method"] == "dtw"]["start_ms"].max() == pytest.approx(0.0, abs=1e-6)


def test_errors_name_the_problem(tmp_path: Path) -> None:
    _store(tmp_path / "xattn.zip")
    write_manifest(tmp_path / "none.tsv", [{"id": "u1", "audio": "x.wav", "n_frames": 48, "tgt_text": "a",
                                             "src_text": "the cat sat"}])  # fmt: skip
    with pytest.raises(DataError, match="word times"):
        evaluate_timestamps(tmp_path / "xattn.zip", tmp_path / "none.tsv")
    _manifest(tmp_path / "short.tsv", times=((0.0, 0.1), (0.1, 0.2)))
    with pytest.raises(DataError, match="3 words but 2 word times"):
        evaluate_timestamps(tmp_path / "xattn.zip", tmp_path / "short.tsv")
