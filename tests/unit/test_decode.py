"""Unit tests for caspes.decode (greedy search and manifest decoding)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tinymodels import fake_model_dims, one_thread, tiny_model  # noqa: F401 - one_thread is a fixture
from torch import nn

from caspes.core.manifest import write_manifest
from caspes.decode.greedy import greedy_decode
from caspes.decode.options import DecodingOptions, max_target_length
from caspes.decode.run import decode_batch, decode_manifest, make_decode_batches
from caspes.features import FeatureArchiveWriter, FeatureReader
from caspes.model import DecoderCache, EncoderOutput, S2TModel, lengths_to_padding_mask
from caspes.model.conformer import subsampled_lengths
from caspes.tokenizer import EOS_ID, PAD_ID, Tokenizer, train_tokenizer

N_MELS = 8
VOCAB = 12
BOS, EOS, PAD = 0, 2, 1


pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny_model(seed: int, vocab: int = VOCAB, n_mels: int = N_MELS, **overrides: object) -> S2TModel:
    return tiny_model(
        seed,
        vocab=vocab,
        n_mels=n_mels,
        d_model=32,
        ffn=64,
        conv_channels=32,
        conv_kernel=7,
        decoder_layers=1,
        max_target_positions=64,
        **overrides,
    )


def _features(lengths: list[int], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((t, N_MELS)) for t in lengths]


def _naive_greedy(
    model: S2TModel, feats: np.ndarray, prefix: list[int], options: DecodingOptions
) -> list[int]:
    """Re-run the teacher-forced decoder on the growing prefix and take the last argmax."""
    with torch.no_grad():
        x = torch.from_numpy(feats).double().unsqueeze(0)
        enc = model.encode(x, torch.tensor([feats.shape[0]]))
        max_len = max_target_length(int(enc.lengths[0]), options, model.dims.max_target_positions)
        target = list(prefix)
        while len(target) < max_len:
            dec_in = torch.tensor([[EOS, *target]])
            logits = model.decode_teacher_forced(enc.states, enc.lengths, dec_in).logits[0, -1].clone()
            logits[PAD] = -math.inf
            logits[BOS] = -math.inf
            if not target:
                logits[EOS] = -math.inf
            token = int(logits.argmax())
            if token == EOS:
                break
            target.append(token)
    return target[len(prefix) :]


def test_greedy_matches_naive_teacher_forced_loop() -> None:
    lengths = [37, 20, 9, 50, 26]
    prefix = [[4], [5], [4], [6], [7]]
    options = DecodingOptions(max_len_b=15)
    # Find a seed whose outputs mix EOS-terminated and max-length rows, so both stops are covered.
    for seed in range(20):
        model = _tiny_model(seed)
        feats = _features(lengths, seed)
        expected = [_naive_greedy(model, f, p, options) for f, p in zip(feats, prefix)]
        stopped_by_eos = [len(e) < options.max_len_b - 1 for e in expected]
        if any(stopped_by_eos) and not all(stopped_by_eos):
            break
    else:  # pragma: no cover
        pytest.fail("no seed with both EOS-terminated and length-capped rows")
    got = greedy_decode(model, feats, prefix, options)
    assert got == expected
    assert all(EOS not in g and PAD not in g for g in got)
    assert all(len(g) <= options.max_len_b - 1 for g in got)


def test_batched_equals_one_by_one_and_tensor_input() -> None:
    model = _tiny_model(0)
    lengths = [37, 20, 9, 50, 26]
    feats = _features(lengths, 1)
    prefix = [[4], [5], [4], [6], [7]]
    options = DecodingOptions(max_len_b=12)
    batched = greedy_decode(model, feats, prefix, options)
    single = [greedy_decode(model, [f], [p], options)[0] for f, p in zip(feats, prefix)]
    assert batched == single
    chunked = greedy_decode(model, feats, prefix, DecodingOptions(max_len_b=12, batch_size=2))
    assert chunked == single
    padded = torch.zeros(len(feats), max(lengths), N_MELS, dtype=torch.float32)
    for i, f in enumerate(feats):
        padded[i, : f.shape[0]] = torch.from_numpy(f)
    padded[1, lengths[1] :] = 7.0  # garbage in padded frames is ignored
    assert greedy_decode(model, padded, prefix, options, lengths=torch.tensor(lengths)) == single
    assert decode_batch(model, feats, prefix, options) == single
    from caspes.decode.beam import beam_search

    beam = DecodingOptions(max_len_b=options.max_len_b, beam_size=4)
    assert decode_batch(model, feats, prefix, beam) == beam_search(model, feats, prefix, beam)


def test_eval_mode_for_the_call_and_training_flag_restored() -> None:
    model = _tiny_model(3, dropout=0.3)
    feats = _features([30, 18], 2)
    expected = greedy_decode(model, feats, [[4], [5]], DecodingOptions(max_len_b=10))
    model.train()
    assert greedy_decode(model, feats, [[4], [5]], DecodingOptions(max_len_b=10)) == expected
    assert model.training


def test_max_length() -> None:
    assert max_target_length(10, DecodingOptions(max_len_a=0.5, max_len_b=3), 64) == 8
    assert max_target_length(10, DecodingOptions(max_len_b=200), 64) == 63
    opts = DecodingOptions(max_len_b=200)
    # a model that never emits EOS fills the whole budget, capped at max_target_positions - 1
    model = _ScriptedModel({0: []}, max_target_positions=10)
    assert greedy_decode(model, [_row_features(0, 40)], [[4]], opts) == [[5] * 8]
    opts = DecodingOptions(max_len_a=0.25, max_len_b=2)
    model = _ScriptedModel({0: [], 1: []})
    out = greedy_decode(model, [_row_features(0, 40), _row_features(1, 16)], [[4], [4, 6]], opts)
    # T' = ceil(T / 4): 10 and 4 -> max targets int(2.5 + 2) = 4 and int(1 + 2) = 3 (prefix included)
    assert out == [[5] * 3, [5] * 1]
    # the prefix alone exhausts the budget: nothing is generated
    assert greedy_decode(model, [_row_features(0, 4)], [[4, 6, 7]], opts) == [[]]
    for bad in (dict(max_len_a=-1.0), dict(max_len_b=0), dict(batch_size=0), dict(beam_size=0)):
        with pytest.raises(ValueError):
            DecodingOptions(**bad)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- scripted model
class _ScriptedModel(nn.Module):
    """Emits a fixed token per (row, target position); the row id is the first feature value.

    ``scripts[row][pos]`` is the token at target position ``pos`` (prefix positions included);
    after the script ends it emits 5 forever. Every decoder prefix it is given is recorded.
    """

    def __init__(self, scripts: dict[int, list[int]], max_target_positions: int = 64) -> None:
        super().__init__()
        self.dims = fake_model_dims(VOCAB, N_MELS, max_target_positions)
        self.weight = nn.Parameter(torch.zeros(1))
        self.scripts = scripts
        self.seen: list[tuple[list[int], list[list[int]]]] = []

    def encode(self, features: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        out_lengths = subsampled_lengths(lengths)
        t = int(out_lengths.max())
        states = torch.zeros(features.size(0), t, 4, dtype=features.dtype)
        states[:, :, 0] = features[:, :1, 0]
        mask = lengths_to_padding_mask(out_lengths, t)
        return EncoderOutput(states=states, lengths=out_lengths, padding_mask=mask)

    def decode_step(self, states, mask, prefix, cache=None, return_attention=False):
        rows = states[:, 0, 0].round().long().tolist()
        self.seen.append((rows, prefix.tolist()))
        pos = prefix.size(1) - 1
        logits = torch.zeros(prefix.size(0), VOCAB, dtype=states.dtype)
        for k, row in enumerate(rows):
            script = self.scripts[row]
            logits[k, script[pos] if pos < len(script) else 5] = 1.0
        return logits, DecoderCache(length=prefix.size(1)), None


def _row_features(row: int, frames: int = 20) -> np.ndarray:
    x = np.zeros((frames, N_MELS))
    x[0, 0] = row
    return x


def test_forced_prefix_comes_first_and_can_differ_per_row() -> None:
    # scripts would emit 9s where the prefix is forced
    model = _ScriptedModel({0: [9, 9, 7, EOS], 1: [9, 8, EOS], 2: [7, EOS]})
    feats = [_row_features(r) for r in range(3)]
    out = greedy_decode(model, feats, [[4, 6], [4], []], DecodingOptions(max_len_b=10))
    assert out == [[7], [8], [7]]
    first_rows, first_prefix = model.seen[0]
    assert first_rows == [0, 1, 2]
    assert all(p == [EOS] for p in first_prefix)  # no common prefix across the rows
    # every decoder input starts with EOS followed by the row's forced tokens
    for rows, prefixes in model.seen:
        for row, p in zip(rows, prefixes):
            forced = {0: [4, 6], 1: [4], 2: []}[row]
            assert p[0] == EOS
            assert p[1 : 1 + len(forced)] == forced[: len(p) - 1]
    # with a common prefix, it goes in with the first step
    model = _ScriptedModel({0: [0, 7, EOS], 1: [0, 8, EOS]})
    assert greedy_decode(model, [_row_features(0), _row_features(1)], [[4], [4]]) == [[7], [8]]
    assert model.seen[0][1] == [[EOS, 4], [EOS, 4]]


def test_eos_stops_rows_and_finished_rows_do_not_change() -> None:
    scripts = {0: [4, 7, EOS, 8, 8, 8], 1: [4, 7, 7, 7, 7, EOS], 2: [4, EOS, 9, 9]}
    model = _ScriptedModel(scripts)
    feats = [_row_features(r) for r in range(3)]
    out = greedy_decode(model, feats, [[4]] * 3, DecodingOptions(max_len_b=20))
    assert out == [[7], [7, 7, 7, 7], []]
    # finished rows leave the batch
    assert [rows for rows, _ in model.seen] == [[0, 1, 2], [0, 1], [1], [1], [1]]


def test_pad_bos_never_and_eos_not_first() -> None:
    # Step 0: EOS is barred as first token, BOS (0) and PAD (1) always: among the tied zeros the
    # lowest allowed id, 3, wins. Step 1: the scripted PAD is barred, and EOS (2) wins the tie.
    model = _ScriptedModel({0: [EOS, PAD, EOS]})
    assert greedy_decode(model, [_row_features(0)], [[]], DecodingOptions(max_len_b=10)) == [[3]]
    model = _ScriptedModel({0: [BOS, 4, BOS, 4, EOS]})
    assert greedy_decode(model, [_row_features(0)], [[]], DecodingOptions(max_len_b=10)) == [
        [3, 4]
    ]  # BOS barred at steps 0 and 2


def test_prefix_validation() -> None:
    model = _ScriptedModel({0: []})
    with pytest.raises(ValueError):
        greedy_decode(model, [_row_features(0)], [[EOS]])
    with pytest.raises(ValueError):
        greedy_decode(model, [_row_features(0)], [[4], [4]])
    with pytest.raises(ValueError):
        greedy_decode(model, [np.zeros((5, 3))], [[4]])
    assert greedy_decode(model, [], []) == []


def test_make_decode_batches() -> None:
    frames = [10, 50, 20, 40, 30, 200]
    batches = make_decode_batches(frames, batch_frames=100)
    assert sorted(i for b in batches for i in b) == list(range(6))
    assert batches[0] == [5]  # longer than the budget: alone
    for b in batches:
        assert len(b) == 1 or len(b) * max(frames[i] for i in b) <= 100
        assert [frames[i] for i in b] == sorted((frames[i] for i in b), reverse=True)
    assert all(len(b) <= 2 for b in make_decode_batches(frames, 10_000, batch_size=2))


# ----------------------------------------------------------------------------- end to end
SENTENCES = [
    "the cat sat on the mat",
    "a dog runs in the park",
    "il gatto dorme sul divano",
    "un cane corre nel parco",
    "the weather is nice today",
    "oggi il tempo è bello",
]


def test_decode_manifest_rows(tmp_path) -> None:
    tok_path = tmp_path / "tok" / "spm.model"
    size = train_tokenizer(SENTENCES * 5, tok_path, ["en", "it"], vocab_size=60)
    tok = Tokenizer(tok_path)
    model = _tiny_model(5, vocab=size, n_mels=80)
    rng = np.random.default_rng(3)
    feats = {"u_long": rng.standard_normal((60, 80)), "u_short": rng.standard_normal((24, 80))}
    with FeatureArchiveWriter(tmp_path / "split.fbank.zip") as writer:
        for uid, x in feats.items():
            writer.add(uid, x)
    # manifest order: short first, so that length sorting must be undone
    rows = [
        {
            "id": "u_short",
            "audio": writer.references["u_short"],
            "n_frames": 24,
            "src_text": "the cat sat",
            "tgt_text": "il gatto dorme",
            "speaker": "s",
            "src_lang": "en",
            "tgt_lang": "it",
        },
        {
            "id": "u_long",
            "audio": writer.references["u_long"],
            "n_frames": 60,
            "src_text": "a dog runs",
            "tgt_text": "un cane corre",
            "speaker": "s",
            "src_lang": "en",
            "tgt_lang": "it",
        },
    ]
    write_manifest(tmp_path / "split.fbank.tsv", rows)
    reader = FeatureReader(tmp_path / "split.fbank.tsv")
    options = DecodingOptions(max_len_b=8)
    for task, lang, ref_col in (("asr", "en", "src_text"), ("st", "it", "tgt_text")):
        out = decode_manifest(model, tok, reader, task, options, batch_frames=1000, progress=False)
        assert [r["id"] for r in out] == ["u_short", "u_long"]
        direct = greedy_decode(model, [reader[r["id"]] for r in rows], [[tok.lang_id(lang)]] * 2, options)
        for r, src, ids in zip(out, rows, direct):
            assert set(r) == {"id", "src_lang", "tgt_lang", "task", "reference", "hypothesis", "pieces"}
            assert (r["src_lang"], r["tgt_lang"], r["task"]) == ("en", "it", task)
            assert r["reference"] == src[ref_col]
            pieces = r["pieces"].split(" ")
            assert pieces[0] == f"<lang:{lang}>"
            piece_ids = [tok.sp.piece_to_id(p) for p in pieces]
            assert piece_ids == [tok.lang_id(lang), *ids]
            assert EOS_ID not in piece_ids and PAD_ID not in piece_ids
            assert r["hypothesis"] == tok.decode(piece_ids)
        # one utterance per batch gives the same rows
        assert decode_manifest(model, tok, reader, task, options, batch_frames=1) == out
    with pytest.raises(ValueError):
        decode_manifest(model, tok, reader, "mt", options)
