"""The numbers behind the tables, from planted data with a known answer: deletion direction (WER and
BLEU) and the bold-best of Tables 4 and 6, correlate_stores and deletion_orders on planted stores,
and the encoder grid (pooling, deletion upsampling, timestamp frame times) against the encoder's own
convolutional subsampling."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from tinymodels import fake_model_dims, one_thread, tiny_model  # noqa: F401 - one_thread is a fixture
from torch import nn

from caspes.analysis.correlation import correlate_stores
from caspes.analysis.timestamps import evaluate_timestamps
from caspes.core.manifest import DataError, format_word_times, write_manifest
from caspes.decode.metrics import bleu
from caspes.decode.options import DecodingOptions
from caspes.decode.xattn import CrossAttentionStoreWriter
from caspes.explain.deletion import deletion_curve, deletion_orders, upsample_frames
from caspes.explain.maps import pool_saliency
from caspes.explain.stores import SaliencyRecord, SaliencyStoreWriter
from caspes.model import DecoderCache, EncoderOutput
from caspes.model.conformer import lengths_to_padding_mask, subsampled_lengths
from caspes.report.paper_tables import build_table

pytestmark = pytest.mark.usefixtures("one_thread")

ROLES = ["lang", "token", "token", "eos"]
DEC, TGT = [2, 3, 10, 11], [3, 10, 11, 2]  # decoder input [EOS, <lang>, a, b]; target [<lang>, a, b, EOS]
PIECES = ["<lang:en>", "▁a", "▁b", "</s>"]


def _saliency(uid: str, saliency: np.ndarray, kind: str, target_ids=TGT, pieces=PIECES, roles=ROLES):
    shape = saliency.shape[1:]
    return SaliencyRecord(id=uid, saliency=saliency.astype(np.float32), counts=np.ones(shape, dtype=int),
                          decoder_input=[2, *target_ids[:-1]], target_ids=list(target_ids), pieces=list(pieces),
                          roles=list(roles), kind=kind, n_masks=10, p=0.5, seed=0)  # fmt: skip


# --------------------------------------------------------------------------- correlate_stores
# Two content rows over T' = 4. Per head, the two content rows' attention; a column equal in both
# rows is 0 after the frame-wise z-score, one that differs is +1 / -1.
A = ([0.7, 0.1, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1])  # frame-normalised: [1, -1, 0, 0; -1, 1, 0, 0]
B = ([0.1, 0.1, 0.7, 0.1], [0.1, 0.1, 0.1, 0.7])  # [0, 0, 1, -1; 0, 0, -1, 1]
A_REV = (A[1], A[0])  # [-1, 1, 0, 0; 1, -1, 0, 0]
HEADS = [[A, B], [B, A_REV]]  # layer 1: heads A, B; layer 2: heads B, A reversed
# SM rows [4, 0, 2, 2] and [0, 4, 2, 2] -> per token [1, 0, .5, .5], [0, 1, .5, .5]: centred, A / 2.
SM = np.array([[4.0, 0.0, 2.0, 2.0], [0.0, 4.0, 2.0, 2.0]])
# Pearson r by hand: A -> 1, B -> 0 (no overlap), A reversed -> -1; the mean of A and B has frame-normalised
# rows [1, -1, 1, -1; -1, 1, -1, 1]: r = 2 / (sqrt(8) * 1) = 1/sqrt(2); that of B and A reversed -1/sqrt(2);
# all four: A + A_rev is the same in both rows, so what is left is B's pattern: r = 0.
EXPECTED_R = {
    ("1", "1"): 1.0, ("1", "2"): 0.0, ("2", "1"): 0.0, ("2", "2"): -1.0,
    ("1", "avg"): 1 / math.sqrt(2), ("2", "avg"): -1 / math.sqrt(2),
    ("avg", "1"): 1 / math.sqrt(2), ("avg", "2"): -1 / math.sqrt(2), ("avg", "avg"): 0.0,
}  # fmt: skip


def _planted_attention(rng: np.random.Generator) -> np.ndarray:
    att = rng.dirichlet(np.ones(4), size=(2, 2, 4))  # the tag and EOS rows: noise, to be dropped
    for layer in range(2):
        for head in range(2):
            att[layer, head, 1:3] = HEADS[layer][head]
    return att


def _smx_from(rows: np.ndarray, frames: int, factor: int, bins: int = 3) -> np.ndarray:
    """(2, T, F): every cell of encoder step j's input frames [j*factor, (j+1)*factor) holds rows[:, j]."""
    steps = np.arange(frames) // factor
    return np.repeat(rows[:, steps, None], bins, axis=2)


@pytest.mark.parametrize("factor", [4, 2])
def test_correlate_stores_gives_the_hand_computed_r(tmp_path: Path, factor: int) -> None:
    rng = np.random.default_rng(0)
    frames = 4 * factor - 1  # the last step has a shorter window (ceil)
    with CrossAttentionStoreWriter(tmp_path / "xattn.zip") as writer:
        for uid in ("u1", "u2"):
            writer.add(uid, _planted_attention(rng), DEC, TGT, PIECES, ROLES)
    noise = rng.random((1, 4)) * 9  # the tag and EOS rows of SM: noise as well
    smh = np.concatenate([noise, SM, noise[::-1]])
    smx = np.concatenate(
        [rng.random((1, frames, 3)), _smx_from(SM, frames, factor), rng.random((1, frames, 3))]
    )
    with SaliencyStoreWriter(tmp_path / "smh.zip") as writer:
        for uid in ("u1", "u2"):
            writer.add_record(_saliency(uid, smh, "encoder"))
    with SaliencyStoreWriter(tmp_path / "smx.zip") as writer:
        for uid in ("u1", "u2"):
            writer.add_record(_saliency(uid, smx, "input"))

    records = correlate_stores(tmp_path / "xattn.zip", tmp_path / "smh.zip", factor=factor)
    got = {(r["utterance"], r["pooling"], str(r["layer"]), str(r["head"])): r["r"] for r in records}
    assert len(got) == len(records) == 2 * len(EXPECTED_R)
    for uid in ("u1", "u2"):
        for (layer, head), r in EXPECTED_R.items():
            assert got[(uid, "none", layer, head)] == pytest.approx(r, abs=1e-6), (uid, layer, head)

    # SM^X constant over each step's window: every pooling gives SM back on the encoder grid
    records = correlate_stores(tmp_path / "xattn.zip", tmp_path / "smx.zip", factor=factor)
    got = {(r["utterance"], r["pooling"], str(r["layer"]), str(r["head"])): r["r"] for r in records}
    assert {k[1] for k in got} == {"max2d", "avg2d", "max1d_avg1d"}
    for pooling in ("max2d", "avg2d", "max1d_avg1d"):
        for (layer, head), r in EXPECTED_R.items():
            assert got[("u2", pooling, layer, head)] == pytest.approx(r, abs=1e-6), (pooling, layer, head)
    # another subsampling than the maps' is an error, not a silently shifted grid
    with pytest.raises(DataError, match="frames"):
        correlate_stores(tmp_path / "xattn.zip", tmp_path / "smx.zip", factor=2 * factor)


# --------------------------------------------------------------------------- deletion_orders
def test_deletion_orders_on_planted_stores(tmp_path: Path) -> None:
    # SM^H: rows min-max scaled per token, then averaged; the tag and EOS rows count too (as in the
    # reference), so they are made to agree: sentence map [0, .75, .25, 1, .5] -> steps 3, 1, 4, 2, 0.
    smh = np.array([[0, 3, 1, 4, 2], [0, 3, 1, 4, 2], [0, 6, 2, 8, 4], [1, 4, 2, 5, 3]], dtype=float)
    # SM^X (4, T=9, F=2): one hot cell per row, (frame, bin) = (7, 1), (7, 1), (3, 0), (7, 1), frames that
    # end a window (f = 4 and 2): sentence map 0.75 at cell 7*2+1 = 15, 0.25 at 3*2+0 = 6, 0 elsewhere.
    smx = np.zeros((4, 9, 2))
    for row, (t, f) in enumerate([(7, 1), (7, 1), (3, 0), (7, 1)]):
        smx[row, t, f] = 1.0
    with SaliencyStoreWriter(tmp_path / "smh.zip") as writer:
        writer.add_record(_saliency("u1", smh, "encoder"))
    with SaliencyStoreWriter(tmp_path / "smx.zip") as writer:
        writer.add_record(_saliency("u1", smx, "input"))
        writer.add_record(_saliency("u2", smx[:, ::-1], "input"))  # frames 8 - 7 = 1 and 8 - 3 = 5
    orders = deletion_orders("smh-p0.7", tmp_path / "smh.zip", {"u1": 20})
    np.testing.assert_array_equal(orders["u1"], [3, 1, 4, 2, 0])
    orders = deletion_orders("smx", tmp_path / "smx.zip", {"u1": 9, "u2": 9})
    assert list(orders) == ["u1", "u2"]
    np.testing.assert_array_equal(orders["u1"][:2], [15, 6])
    np.testing.assert_array_equal(
        orders["u1"][2:], [k for k in range(18) if k not in (15, 6)]
    )  # ties: lower first
    np.testing.assert_array_equal(orders["u2"][:2], [1 * 2 + 1, 5 * 2 + 0])
    # frames of SM^X 2D-max pooled to T' = ceil(9 / f), then each step copied to its f frames:
    # f = 4: steps [.25, .75, 0] -> frames 4-7, then 0-3, then 8; f = 2: steps [0, .25, 0, .75, 0]
    orders = deletion_orders("smx-max2d", tmp_path / "smx.zip", {"u1": 9}, ids=["u1"])
    assert list(orders) == ["u1"]
    np.testing.assert_array_equal(orders["u1"], [4, 5, 6, 7, 0, 1, 2, 3, 8])
    orders = deletion_orders("smx-max2d", tmp_path / "smx.zip", {"u1": 9}, ids=["u1"], factor=2)
    np.testing.assert_array_equal(orders["u1"], [6, 7, 2, 3, 0, 1, 4, 5, 8])
    # cross-attention: all layers and heads averaged; the per-token max is at steps 1 then 0
    att = np.full((2, 2, 4, 3), 0.1)
    att[0, :, :, 1] = 0.8  # layer 1 looks at step 1, layer 2 at step 0 (weaker: 0.6)
    att[1, :, :, 0] = 0.6
    with CrossAttentionStoreWriter(tmp_path / "xattn.zip") as writer:
        writer.add("u1", att, DEC, TGT, PIECES, ROLES)
    orders = deletion_orders("ca", tmp_path / "xattn.zip", {"u1": 10})
    np.testing.assert_array_equal(orders["u1"], [4, 5, 6, 7, 0, 1, 2, 3, 8, 9])


# --------------------------------------------------------------------------- deletion direction
WORD_STEPS = (1, 3, 5, 7)  # word k of every utterance is read off encoder step WORD_STEPS[k]
N_FRAMES, N_BINS, N_UTTS = 40, 2, 2  # T' = 10
VOCAB = ["<s>", "<pad>", "</s>", "<lang:en>"]
VOCAB += [f"w{u}{k}" for u in range(1, N_UTTS + 1) for k in range(len(WORD_STEPS))]
VOCAB += [f"x{k}" for k in range(len(WORD_STEPS))]  # what word k becomes once its step is deleted
IDS = {p: i for i, p in enumerate(VOCAB)}


class _WordTokenizer:
    """One piece per word (the deletion code needs only these four methods)."""

    def split_prompt(self, pieces, where=""):
        return 1

    def piece_to_id(self, piece):
        return IDS[piece]

    def decode(self, ids):
        return " ".join(VOCAB[i] for i in ids if i > 3)


class _WordModel(nn.Module):
    """Planted relevance: encoder step s is the mean of input frames [4s, 4s + 4); target word k is
    right (``w<u><k>``, ``u`` read off bin 1) while step WORD_STEPS[k] is intact (bin 0 still 1, so
    none of its 4 frames and not the step itself deleted), else ``x<k>``; then EOS. The other steps
    are never looked at."""

    def __init__(self) -> None:
        super().__init__()
        self.dims = fake_model_dims(len(VOCAB), N_BINS, 32)
        self.weight = nn.Parameter(torch.zeros(1))

    def encode(self, features: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        b, t, f = features.shape
        out = subsampled_lengths(lengths)
        steps = int(out.max())
        padded = nn.functional.pad(features, (0, 0, 0, 4 * steps - t))
        states = padded.view(b, steps, 4, f).mean(2)
        return EncoderOutput(states=states, lengths=out, padding_mask=lengths_to_padding_mask(out, steps))

    def decode_step(self, states, mask, prefix, cache=None, return_attention=False):
        k = prefix.size(1) - 2  # the word predicted now: decoder input [EOS, <lang>, words ...]
        logits = torch.full((prefix.size(0), len(VOCAB)), -10.0, dtype=states.dtype)
        for row in range(prefix.size(0)):
            if k < 0:
                token = IDS["<lang:en>"]
            elif k >= len(WORD_STEPS):
                token = self.dims.eos_id
            else:
                step = states[row, WORD_STEPS[k]]
                intact = bool(step[0] == 1.0)
                token = IDS[f"w{int(step[1].round())}{k}" if intact else f"x{k}"]
            logits[row, token] = 0.0
        return logits, DecoderCache(length=prefix.size(1)), None


def _word_orders(unit: str) -> dict[str, np.ndarray]:
    """Rankings: the word steps' units first, their exact reverse, and plain time order."""
    size = 4 if unit == "frame" else 1  # units per encoder step
    words = [s * size + i for s in WORD_STEPS for i in range(size)]
    total = N_FRAMES if unit == "frame" else N_FRAMES // 4
    relevant = np.array(words + [u for u in range(total) if u not in words])
    return {"relevant": relevant, "reversed": relevant[::-1].copy(), "time": np.arange(total)}


# Words deleted (of 4) at 0, 25, 50, 75, 100 %, by hand.  Frames (40): 25 % = 10 frames = the word
# frames of steps 1 and 3 and half of step 5's; reversed, the 24 other frames go first, so at 75 % (30)
# steps 7 and 5 (2 of its frames) are hit; time order reaches step k's frames after 4 * (2k + 1) + 1.
# Encoder steps (10): 2, 5, 7, 10 steps deleted.
BROKEN = {
    "frame": {"relevant": [0, 3, 4, 4, 4], "reversed": [0, 0, 0, 2, 4], "time": [0, 1, 2, 4, 4]},
    "encoder": {"relevant": [0, 2, 4, 4, 4], "reversed": [0, 0, 0, 1, 4], "time": [0, 1, 2, 3, 4]},
}
#: Which words are gone: relevant-first and time order delete words 0, 1, ..., reversed 3, 2, ...
FIRST_BROKEN = {"relevant": True, "time": True, "reversed": False}


def _hypothesis(u: int, broken: int, first: bool) -> str:
    n = len(WORD_STEPS)
    gone = set(range(broken)) if first else set(range(n - broken, n))
    return " ".join(f"x{k}" if k in gone else f"w{u}{k}" for k in range(n))


def _write_curve(path: Path, res) -> str:
    """A deletion curve file as the rule writes it (deletion_to_files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"unit": res.unit, "metric": res.metric, "percent": res.percents, "score": res.scores,
                  "auc": round(res.auc, 4), "utterances": N_UTTS}).to_csv(path, sep="\t", index=False)  # fmt: skip
    return str(path)


def _write_corr(path: Path, pooling: str) -> str:
    rows = [{"utterance": "u1", "pooling": pooling, "layer": layer, "head": "avg", "r": 0.5}
            for layer in ("1", "avg")]  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    return str(path)


@pytest.mark.parametrize("task", ["asr", "st"])
@pytest.mark.parametrize("unit", ["frame", "encoder"])
def test_deletion_direction_and_bold_best(tmp_path: Path, task: str, unit: str) -> None:
    """Relevant-first deletion beats its reverse (higher WER-AUC, lower BLEU-AUC) on a model whose
    relevance is planted, with the curves' every point known by hand; Tables 4 (frames of SM^X) and 6
    (encoder steps of SM^H) bold the relevant-first row's deletion AUC for either metric."""
    model = _WordModel()
    feats = {}
    for u in range(1, N_UTTS + 1):
        x = np.ones((N_FRAMES, N_BINS), dtype=np.float32)
        x[:, 1] = u
        feats[f"u{u}"] = x
    refs = [_hypothesis(u, 0, True) for u in range(1, N_UTTS + 1)]
    rows = [{"id": f"u{u}", "reference": refs[u - 1], "pieces": "<lang:en> " + refs[u - 1]}
            for u in range(1, N_UTTS + 1)]  # fmt: skip
    options = DecodingOptions(beam_size=2, max_len_b=8)
    curves = {}
    for name, order in _word_orders(unit).items():
        orders = dict.fromkeys(feats, order)
        res = deletion_curve(
            model, _WordTokenizer(), feats, rows, orders, unit, task, options, step_percent=25
        )
        for p, broken in zip(res.percents, BROKEN[unit][name]):
            want = [_hypothesis(u, broken, FIRST_BROKEN[name]) for u in range(1, N_UTTS + 1)]
            assert [h["hypothesis"] for h in res.hypotheses if h["percent"] == f"{p:g}"] == want, (name, p)
        if task == "asr":
            assert res.metric == "wer_max"
            assert res.scores == pytest.approx([25.0 * b for b in BROKEN[unit][name]])
        else:
            assert res.metric == "bleu"
            expected = [
                bleu([_hypothesis(u, b, FIRST_BROKEN[name]) for u in range(1, N_UTTS + 1)], refs)
                for b in BROKEN[unit][name]
            ]
            assert res.scores == pytest.approx(expected) and res.scores[0] == pytest.approx(100.0)
        s = res.scores
        assert res.auc == pytest.approx(0.25 * (s[0] / 2 + s[1] + s[2] + s[3] + s[4] / 2))
        curves[name] = res
    relevant, reverse = curves["relevant"].auc, curves["reversed"].auc
    assert relevant > reverse if task == "asr" else relevant < reverse
    if task == "asr":  # by hand from BROKEN
        want = {"frame": (81.25, 25.0), "encoder": (75.0, 18.75)}[unit]
        assert (relevant, reverse) == pytest.approx(want)

    # The tables: the relevant-first curve in the middle row, so neither first nor last wins by accident.
    run = tmp_path / "results/base/en-en/dev"
    if unit == "frame":
        settings = {"avg2d": "time", "max1d_avg1d": "relevant", "max2d": "reversed"}
        dels = [_write_curve(run / f"deletion/smx-{p}.tsv", curves[n]) for p, n in settings.items()]
        corr = run / "correlation/smx.tsv"
        corr.parent.mkdir(parents=True)
        pd.concat([pd.read_csv(_write_corr(tmp_path / f"{p}.tsv", p), sep="\t") for p in settings]).to_csv(
            corr, sep="\t", index=False
        )
        table = build_table("table4", {"correlation": [str(corr)], "deletion": dels})
        labels = ["2D avg", "1D max + 1D avg", "2D max"]
    else:
        settings = {"0.9": "time", "0.7": "relevant", "0.5": "reversed"}
        dels = [_write_curve(run / f"deletion/smh-p{p}.tsv", curves[n]) for p, n in settings.items()]
        corr = [_write_corr(run / f"correlation/smh-p{p}.tsv", "none") for p in settings]
        table = build_table("table6", {"correlation": corr, "deletion": dels})
        labels = ["0.9", "0.7", "0.5"]
    col = table.columns.index("deletion")
    assert [r[0].value for r in table.rows] == labels
    assert [r[col].value for r in table.rows] == pytest.approx(
        [round(curves[settings[key]].auc, 4) for key in settings]
    )
    assert [bool(r[col].bold) for r in table.rows] == [False, True, False], (task, unit)


# --------------------------------------------------------------------------- the encoder grid
def _conv_stack(kind: str, tmp_path: Path):
    """(factor, bins, conv, length) of a model's own subsampling: ``conv`` maps (1, T, bins) -> (1, T', D)
    and ``length(T)`` is the T' the model reports."""
    if kind == "ours":
        model = tiny_model(0, vocab=12, n_mels=8)
        sub = model.encoder.subsample
        return (
            4,
            8,
            lambda x: sub(x, torch.tensor([x.size(1)]))[0],
            lambda t: int(model.output_lengths(torch.tensor([t]))[0]),
        )
    pytest.importorskip("transformers")
    from transformers import WhisperForConditionalGeneration

    from caspes.hf.card import subsampling_factor
    from caspes.hf.tiny import build_tiny_whisper

    hf = WhisperForConditionalGeneration.from_pretrained(build_tiny_whisper(tmp_path / "whisper")).eval()
    enc = hf.get_encoder()
    factor = subsampling_factor(hf.config.to_dict(), {}, "whisper")

    def conv(x: torch.Tensor) -> torch.Tensor:  # WhisperEncoder.forward before its positions
        h = nn.functional.gelu(enc.conv1(x.transpose(1, 2)))
        return nn.functional.gelu(enc.conv2(h)).transpose(1, 2)

    return (
        factor,
        hf.config.num_mel_bins,
        conv,
        lambda t: conv(torch.zeros(1, t, hf.config.num_mel_bins)).size(1),
    )


@pytest.mark.parametrize("kind", ["ours", "whisper"])
def test_encoder_step_j_covers_input_frames_jf_to_j1f(tmp_path: Path, kind: str) -> None:
    """What the model's convolutions compute, against the grid the maps use: ``ceil(T / f)`` steps,
    step j centred on input frame j*f (its receptive field, found by perturbing one frame at a time, is
    symmetric about it), so the window [j*f, (j+1)*f) that pooling, deletion upsampling and timestamps
    give step j starts at its centre and every frame belongs to exactly one step."""
    factor, bins, conv, model_length = _conv_stack(kind, tmp_path)
    assert factor == {"ours": 4, "whisper": 2}[kind]
    for t in range(1, 4 * factor + 2):
        n = math.ceil(t / factor)
        with torch.no_grad():
            assert (
                conv(torch.zeros(1, t, bins, dtype=torch.float64 if kind == "ours" else torch.float32)).size(
                    1
                )
                == n
            )
        assert model_length(t) == n
        assert pool_saliency(np.ones((1, t, 3)), "max2d", factor).shape == (1, n)
        np.testing.assert_array_equal(upsample_frames(np.arange(n), t, factor), np.arange(t) // factor)
        for frame in range(t):  # one hot frame lands in step frame // factor, for every pooling
            x = np.zeros((1, t, 3))
            x[0, frame, 1] = 1.0
            for method in ("max2d", "avg2d", "max1d_avg1d"):
                assert np.flatnonzero(pool_saliency(x, method, factor)[0]).tolist() == [frame // factor]
    t = 12 * factor
    dtype = torch.float64 if kind == "ours" else torch.float32
    x = torch.randn(1, t, bins, generator=torch.Generator().manual_seed(0), dtype=dtype)
    with torch.no_grad():
        base = conv(x)
        reach: dict[int, list[int]] = {}
        for frame in range(t):
            y = x.clone()
            y[0, frame] += 1.0
            for j in torch.nonzero((conv(y) - base).abs().amax(-1)[0] > 1e-6).flatten().tolist():
                reach.setdefault(j, []).append(frame)
    assert sorted(reach) == list(range(math.ceil(t / factor)))
    width = {"ours": 6, "whisper": 2}[kind]  # two convolutions: kernels 5, 5 (strides 2, 2); 3, 3 (1, 2)
    for j, frames in reach.items():
        lo, hi = min(frames), max(frames)
        assert frames == list(range(lo, hi + 1))
        if lo > 0 and hi < t - 1:  # not cut by the utterance's edges
            assert (lo, hi) == (j * factor - width, j * factor + width), (j, lo, hi)


@pytest.mark.parametrize("factor", [4, 2])
def test_timestamps_read_step_j_as_starting_at_frame_jf(tmp_path: Path, factor: int) -> None:
    """Words planted on encoder steps (CA) and on their input frames (SM^X): with the model's factor,
    both give the ground-truth times (step j starts at j * factor * 10 ms) exactly."""
    spans = [(0, 3), (3, 5), (5, 8), (8, 12)]  # encoder steps of the, ca, t, sat
    pieces = ["<lang:en>", "▁the", "▁ca", "t", "▁sat", "</s>"]
    roles = ["lang", "token", "token", "token", "token", "eos"]
    t_enc, frames = 12, 12 * factor - 1
    att = np.full((1, 2, len(pieces), t_enc), 0.01)
    smx = np.full((len(pieces), frames, 2), 0.01)
    for row, (a, b) in enumerate(spans, start=1):
        att[:, :, row, a:b] = 1.0
        smx[row, a * factor : b * factor] = 1.0
    att /= att.sum(-1, keepdims=True)
    ids = list(range(len(pieces)))
    with CrossAttentionStoreWriter(tmp_path / "xattn.zip") as writer:
        writer.add("u1", att, [2, *ids[:-1]], [*ids[:-1], 2], pieces, roles)
    with SaliencyStoreWriter(tmp_path / "smx.zip") as writer:
        writer.add_record(_saliency("u1", smx, "input", [*ids[:-1], 2], pieces, roles))
    step = 0.01 * factor
    times = [(0.0, 3 * step), (3 * step, 8 * step), (8 * step, 12 * step)]  # the, cat, sat
    write_manifest(tmp_path / "m.tsv", [{"id": "u1", "audio": "x.wav", "n_frames": frames, "tgt_text": "the cat sat",
                                         "src_text": "the cat sat", "word_times": format_word_times(times)}])  # fmt: skip
    df = pd.DataFrame(evaluate_timestamps(tmp_path / "xattn.zip", tmp_path / "m.tsv", smx_path=tmp_path / "smx.zip",
                                          methods=["dtw"], ca_norm="none", factor=factor))  # fmt: skip
    assert set(df["map"]) == {"CA l1", "CA all", "SM^X"} and (df["words"] == 3).all()
    np.testing.assert_allclose(df[["start_ms", "end_ms"]].to_numpy(), 0.0, atol=1e-6)
