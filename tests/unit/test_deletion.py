"""Unit tests for caspes.explain.deletion and caspes.explain.size (deletion curves, rankings, size metric)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tinymodels import one_thread, tiny_model  # noqa: F401 - one_thread is a fixture

from caspes.decode.beam import beam_search
from caspes.decode.metrics import wer_max
from caspes.decode.options import DecodingOptions
from caspes.explain.deletion import (
    EncoderOcclusion,
    auc,
    delete_units,
    deletion_curve,
    deletion_steps,
    encoder_keep,
    map_ranking,
    ranking,
    upsample_frames,
)
from caspes.explain.size import size_curve
from caspes.tokenizer import Tokenizer, train_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")

SENTENCES = ["the cat sat on the mat", "a dog runs in the park", "il gatto dorme", "un cane corre nel parco"]


def test_steps_and_auc() -> None:
    steps = deletion_steps(5)
    assert len(steps) == 21 and steps[0] == 0 and steps[-1] == 100
    with pytest.raises(ValueError):
        deletion_steps(7)
    assert auc([100.0] * 21, steps) == pytest.approx(100.0)
    assert auc(steps, steps) == pytest.approx(50.0)  # WER rising linearly 0 -> 100
    rng = np.random.default_rng(0)
    scores = rng.uniform(0, 100, 21)
    assert auc(scores, steps) == pytest.approx(np.trapezoid(scores, steps) / 100)


def test_upsample_and_ranking() -> None:
    np.testing.assert_array_equal(upsample_frames(np.array([1, 2, 3]), 10), [1, 1, 1, 1, 2, 2, 2, 2, 3, 3])
    with pytest.raises(ValueError):
        upsample_frames(np.array([1, 2]), 10)  # ceil(10 / 4) = 3
    np.testing.assert_array_equal(
        ranking(np.array([0.5, 0.9, 0.5, 0.1])), [1, 0, 2, 3]
    )  # ties: lower index first


def test_delete_units_cells_frames_and_encoder_keep() -> None:
    x = np.arange(1, 13, dtype=np.float32).reshape(4, 3)
    order = ranking(x)  # the largest values first
    assert np.array_equal(delete_units(x, order, "cell", 0), x)
    half = delete_units(x, order, "cell", 50)
    assert (half == 0).sum() == 6 and np.all(half.reshape(-1)[:6] == np.arange(1, 7))
    assert (delete_units(x, order, "cell", 100) == 0).all()
    assert (delete_units(x, order, "cell", 10) == 0).sum() == math.floor(12 * 0.10)
    frames = delete_units(x, np.array([2, 0, 1, 3]), "frame", 50)
    assert (frames[[2, 0]] == 0).all() and np.array_equal(frames[[1, 3]], x[[1, 3]])
    with pytest.raises(ValueError):
        delete_units(x, np.arange(5), "frame", 10)
    np.testing.assert_array_equal(encoder_keep(np.array([3, 1, 0, 2]), 50), [True, False, True, False])


def test_map_ranking_normalises_each_token_first() -> None:
    # row 0 is huge but its peak is at cell 0; rows 1 and 2 are small and peak at cell 5:
    # after per-token min-max scaling, cell 5 wins the token average.
    sal = np.zeros((3, 2, 3))
    sal[0, 0, 0], sal[0, 1, 2] = 1000.0, 900.0
    sal[1, 1, 2] = sal[2, 1, 2] = 0.01
    assert map_ranking(sal, "cell", 2)[0] == 5
    enc = np.array([[0.0, 1.0, 0.5], [0.2, 0.3, 0.1]])
    assert map_ranking(enc, "encoder", 12).tolist()[0] == 1
    frames = map_ranking(enc, "frame", 10)  # T' = 3 -> T = 10
    assert frames.shape == (10,) and set(frames[:4].tolist()) == {4, 5, 6, 7}
    with pytest.raises(ValueError):
        map_ranking(enc, "cell", 3)


def test_size_curve() -> None:
    taus, pct, area = size_curve([np.ones((2, 5, 4))])
    assert len(taus) == 21 and pct == [100.0] * 21 and area == pytest.approx(100.0)
    half = np.concatenate([np.zeros(10), np.ones(10)]).reshape(2, 10)
    _, pct, area = size_curve([half, half])
    assert pct[0] == 100.0 and pct[1:] == [50.0] * 20
    assert area == pytest.approx((100 + 50) / 2 * 0.05 + 50 * 0.95)


def test_encoder_occlusion_zeroes_states_and_passes_through() -> None:
    model = tiny_model(1, vocab=10, n_mels=8)
    x = torch.randn(2, 20, 8, dtype=torch.float64)
    lengths = torch.tensor([20, 13])
    wrapped = EncoderOcclusion(model)
    wrapped.set_masks([np.array([True, False, True, True, False]), np.ones(4, dtype=bool)])
    enc = wrapped.encode(x, lengths)
    ref = model.encode(x, lengths)
    assert torch.all(enc.states[0, [1, 4]] == 0)
    torch.testing.assert_close(enc.states[0, [0, 2, 3]], ref.states[0, [0, 2, 3]])
    torch.testing.assert_close(enc.states[1], ref.states[1])
    wrapped.set_masks([np.ones(5, dtype=bool)])
    with pytest.raises(RuntimeError):
        wrapped.encode(x, lengths)  # one mask for two utterances


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> Tokenizer:
    path = tmp_path_factory.mktemp("tok") / "spm.model"
    train_tokenizer(SENTENCES * 5, path, ["en", "it"], vocab_size=40)
    return Tokenizer(path)


@pytest.mark.parametrize("unit", ["cell", "frame", "encoder"])
def test_deletion_curve_end_to_end(tokenizer: Tokenizer, unit: str) -> None:
    model = tiny_model(3, vocab=len(tokenizer.sp), n_mels=80, d_model=32, ffn=64, conv_channels=32)
    rng = np.random.default_rng(1)
    feats = {f"u{k}": rng.standard_normal((24, 80)).astype(np.float32) for k in range(3)}
    options = DecodingOptions(beam_size=3, max_len_b=6)
    lang = tokenizer.lang_id("en")
    clean = beam_search(model, list(feats.values()), [[lang]] * 3, options, no_repeat_ngram_size=5)
    rows = [
        {
            "id": uid,
            "reference": tokenizer.decode(hyp),  # the clean hypothesis: WER 0 at 0 %, rising after
            "pieces": "<lang:en> " + " ".join(tokenizer.sp.id_to_piece(i) for i in hyp),
        }
        for uid, hyp in zip(feats, clean)
    ]
    sizes = {"cell": 24 * 80, "frame": 24, "encoder": 6}
    orders = {uid: rng.permutation(sizes[unit]) for uid in feats}
    res = deletion_curve(model, tokenizer, feats, rows, orders, unit, "asr", options, step_percent=25)
    assert res.percents == [0, 25, 50, 75, 100] and len(res.scores) == 5
    assert res.metric == "wer_max" and 0 <= min(res.scores) and max(res.scores) <= 100
    at = {p: [h["hypothesis"] for h in res.hypotheses if h["percent"] == f"{p:g}"] for p in res.percents}
    # 0 %: the clean hypotheses, re-decoded by the same beam search
    assert at[0] == [tokenizer.decode(h) for h in clean]
    assert res.scores[0] == pytest.approx(wer_max(at[0], [r["reference"] for r in rows])) == 0.0
    # 100 %: nothing of the input is left, so every utterance (same length) decodes alike
    assert len(set(at[100])) == 1
    s = res.scores  # trapezoid over 0, .25, .5, .75, 1, by hand
    assert res.auc == pytest.approx(0.25 * (s[0] / 2 + s[1] + s[2] + s[3] + s[4] / 2))
    with pytest.raises(ValueError):
        deletion_curve(model, tokenizer, feats, rows, {}, unit, "asr", options)
