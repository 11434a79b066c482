"""The Hugging Face adapter (caspes.hf): tiny random Whisper and Speech2Text models built offline,
one protocol-conformance suite run on our model and on both adapters, and the config checks."""

import copy
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from caspes.core.config import ConfigError
from caspes.decode.beam import beam_search_nbest
from caspes.decode.options import DecodingOptions
from caspes.decode.run import decode_batch
from caspes.decode.xattn import extract_cross_attention_batch
from caspes.explain.deletion import delete_units
from caspes.explain.options import OcclusionOptions
from caspes.explain.spes import clean_log_probs, explain_encoder, explain_input, kl_rows, occlusion_context
from caspes.hf.adapter import whisper_pad_value
from caspes.hf.card import check_hf_entry, hf_folder_files, read_model_card, write_model_card
from caspes.hf.features import load_extractor, model_features
from caspes.hf.loading import load_for_inference
from caspes.hf.tiny import build_tiny_speech2text, build_tiny_whisper
from caspes.model import ModelDimensions, S2TModel

DATA = {"languages": ["en", "it"], "translation": {"en": "it", "it": "en"}}
KINDS = ["ours", "whisper", "speech2text"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {
        "whisper": build_tiny_whisper(root / "whisper"),
        "speech2text": build_tiny_speech2text(root / "speech2text"),
    }


def _card(folders, kind, tmp_path_factory, **entry):
    info = check_hf_entry(
        kind, {"path": str(folders[kind]), "languages": ["en"], "tasks": ["asr"], **entry}, DATA
    )
    info["targets"] = []
    path = tmp_path_factory.mktemp("card") / "model.json"
    write_model_card(info, hf_folder_files(folders[kind]), path)
    return path


def _audio(seconds: float, seed: int) -> np.ndarray:
    """A noisy tone: speech-like energy so the log-mel has structure."""
    rs = np.random.RandomState(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.3 * np.sin(2 * np.pi * (200 + 300 * seed) * t) + 0.05 * rs.randn(t.size)).astype(np.float32)


class Subject:
    """One model kind under the conformance suite: the model, two utterances' features, a prompt."""

    def __init__(self, kind, folders, tmp_path_factory):
        self.kind = kind
        if kind == "ours":
            torch.manual_seed(0)
            dims = ModelDimensions(d_model=16, encoder_layers=1, decoder_layers=2, encoder_heads=2,
                                   decoder_heads=2, encoder_ffn=32, decoder_ffn=32, vocab_size=24,
                                   n_mels=8, conv_channels=16, conv_kernel=5, dropout=0.0)  # fmt: skip
            self.model = S2TModel(dims).eval()
            rs = np.random.RandomState(0)
            self.feats = [rs.randn(37, 8).astype(np.float32), rs.randn(53, 8).astype(np.float32)]
            self.prompt = [4]
            self.subsampling = 4
        else:
            self.card_path = _card(folders, kind, tmp_path_factory)
            self.model, self.tokenizer = load_for_inference(self.card_path)
            card = read_model_card(self.card_path)
            extractor = load_extractor(card)
            self.feats = [
                model_features(extractor, _audio(s, k), 16000, card["fixed_window"], f"utt{k}")
                for k, s in enumerate((0.61, 0.93))
            ]
            self.prompt = self.tokenizer.decoding_prefix("asr", "en", "en", True)
            self.subsampling = card["subsampling"]
        self.dims = self.model.dims

    def decoder_input(self, n_text: int = 4) -> list[int]:
        text = [t for t in range(5, 5 + 4 * n_text) if t not in set(getattr(self.dims, "suppress_ids", ()))]
        return [self.dims.eos_id, *self.prompt, *text[:n_text]]


@pytest.fixture(scope="module", params=KINDS)
def subject(request, folders, tmp_path_factory):
    return Subject(request.param, folders, tmp_path_factory)


def _encode(model, feats):
    lengths = torch.tensor([f.shape[0] for f in feats])
    batch = torch.zeros(len(feats), int(lengths.max()), feats[0].shape[1])
    for i, f in enumerate(feats):
        batch[i, : f.shape[0]] = torch.from_numpy(f)
    return model.encode(batch, lengths)


# --------------------------------------------------------------------------- conformance
def test_cross_attention_rows_sum_to_one(subject):
    with torch.inference_mode():
        enc = _encode(subject.model, subject.feats[:1])
        dec = torch.tensor([subject.decoder_input()])
        out = subject.model.decode_teacher_forced(enc.states, enc.lengths, dec, return_attention=True)
    w = out.cross_attention  # (B, L, H, I, T'') over every step the decoder attends to
    assert w.shape[:4] == (1, subject.dims.decoder_layers, subject.dims.decoder_heads, dec.size(1))
    torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1]), atol=1e-5, rtol=0)


def test_padding_invariance(subject):
    """An utterance decoded in a batch beside a longer one gives the logits it gives alone."""
    dec = torch.tensor([subject.decoder_input()] * 2)
    with torch.inference_mode():
        enc = _encode(subject.model, subject.feats)
        both = subject.model.decode_teacher_forced(enc.states, enc.lengths, dec).logits
        for i, f in enumerate(subject.feats):
            e = _encode(subject.model, [f])
            alone = subject.model.decode_teacher_forced(e.states, e.lengths, dec[:1]).logits
            torch.testing.assert_close(both[i], alone[0], atol=1e-4, rtol=1e-4)
    expected = [math.ceil(f.shape[0] / subject.subsampling) for f in subject.feats]
    assert enc.lengths.tolist() == expected


def test_masking_nothing_gives_kl_zero(subject):
    x = torch.from_numpy(subject.feats[0])
    dec = torch.tensor([subject.decoder_input()])
    fill, context = occlusion_context(subject.model, x)
    keep = torch.ones_like(x, dtype=torch.bool)
    with torch.inference_mode(), context:
        clean, _ = clean_log_probs(subject.model, x, dec)
        kept = x * keep if fill is None else torch.where(keep, x, fill.expand_as(x))
        enc = subject.model.encode(kept.unsqueeze(0), torch.tensor([x.size(0)]))
        logits = subject.model.decode_teacher_forced(enc.states, enc.lengths, dec).logits
        kl = kl_rows(clean, torch.log_softmax(logits.float(), dim=-1).unsqueeze(0))
    assert float(kl.abs().max()) < 1e-6


def test_maps_have_the_expected_shapes(subject):
    feats = subject.feats[0]
    t, f = feats.shape
    dec = subject.decoder_input()
    t_enc = math.ceil(t / subject.subsampling)
    (att,) = extract_cross_attention_batch(subject.model, [feats], [dec])
    assert att.shape == (subject.dims.decoder_layers, subject.dims.decoder_heads, len(dec), t_enc)
    options = OcclusionOptions(n_masks=6, p=0.5, seed=3)
    smh = explain_encoder(subject.model, feats, dec, options, uid="u")
    assert smh.saliency.shape == (len(dec), t_enc) and smh.counts.shape == (t_enc,)
    levels = [np.arange(t * f).reshape(t, f) // 97]
    smx = explain_input(subject.model, feats, dec, levels, options, uid="u")
    assert smx.saliency.shape == (len(dec), t, f) and smx.counts.shape == (t, f)
    assert np.isfinite(smx.saliency).all() and (smx.saliency >= 0).all() and smx.saliency.max() > 0


def test_beam_scores_are_teacher_forced_log_probabilities(subject):
    """The adapter's incremental steps and its teacher-forced pass agree: each finished
    hypothesis's score is the sum of the teacher-forced log-probabilities of its target."""
    options = DecodingOptions(beam_size=3, max_len_b=6)
    with torch.inference_mode():
        nbest = beam_search_nbest(
            subject.model, subject.feats[:1], [subject.prompt], options, no_repeat_ngram_size=0
        )
        enc = _encode(subject.model, subject.feats[:1])
        eos = subject.dims.eos_id
        for hyp in nbest[0]:
            target = [*subject.prompt, *hyp.tokens, eos]
            dec = torch.tensor([[eos, *subject.prompt, *hyp.tokens]])
            lp = torch.log_softmax(
                subject.model.decode_teacher_forced(enc.states, enc.lengths, dec).logits.double(), -1
            )
            score = float(lp[0, torch.arange(len(target)), torch.tensor(target)].sum())
            assert score == pytest.approx(hyp.score, abs=1e-3)
            assert not set(hyp.tokens) & set(getattr(subject.dims, "suppress_ids", ()))


# --------------------------------------------------------------------------- Whisper specifics
@pytest.fixture(scope="module")
def whisper(folders, tmp_path_factory):
    return Subject("whisper", folders, tmp_path_factory)


def test_whisper_padding_reproduces_the_extractor(whisper):
    """The adapter pads real frames as the extractor pads audio: the logits equal the model's on the
    extractor's own full window (the STFT frames straddling the audio's end aside, a small shift)."""
    card = read_model_card(whisper.card_path)
    extractor = load_extractor(card)
    audio = _audio(0.61, 0)
    full = extractor(audio, sampling_rate=16000, return_tensors="pt").input_features
    dec = torch.tensor([whisper.decoder_input()])
    with torch.inference_mode():
        hf = whisper.model.hf(input_features=full, decoder_input_ids=whisper.model._decoder_ids(dec)).logits
        enc = _encode(whisper.model, whisper.feats[:1])
        ours = whisper.model.decode_teacher_forced(enc.states, enc.lengths, dec).logits
    torch.testing.assert_close(ours, hf, atol=2e-3, rtol=1e-3)
    real = whisper.feats[0].shape[0]
    tail = full[0, :, real + 2 :].T
    torch.testing.assert_close(tail, whisper_pad_value(torch.from_numpy(whisper.feats[0])).expand_as(tail))


def test_whisper_occlusion_keeps_the_clean_padding(whisper):
    """Occluding the loudest cells must not move the padding: inside the reference context the
    padded window of a masked copy equals the clean one's beyond the real frames."""
    x = torch.from_numpy(whisper.feats[0])
    fill, context = occlusion_context(whisper.model, x)
    torch.testing.assert_close(fill, x.mean(0))
    loud = x >= x.max() - 0.5
    masked = torch.where(loud, fill.expand_as(x), x)
    lengths = torch.tensor([x.size(0)])
    with context:
        padded_masked, _ = whisper.model._model_input(masked.unsqueeze(0), lengths)
    padded_clean, _ = whisper.model._model_input(x.unsqueeze(0), lengths)
    assert torch.equal(padded_masked[0, x.size(0) :], padded_clean[0, x.size(0) :])
    unguarded, _ = whisper.model._model_input(masked.unsqueeze(0), lengths)
    assert not torch.equal(unguarded[0, x.size(0) :], padded_clean[0, x.size(0) :])


def test_deletion_fills_with_the_per_bin_mean():
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    fill = x.mean(0)
    order = np.array([3, 0, 1, 2])
    out = delete_units(x, order, "frame", 50, fill)
    np.testing.assert_array_equal(out[[3, 0]], np.stack([fill, fill]))
    np.testing.assert_array_equal(out[[1, 2]], x[[1, 2]])
    cells = delete_units(x, np.arange(12)[::-1], "cell", 25, fill)
    np.testing.assert_array_equal(cells[3], fill)
    np.testing.assert_array_equal(delete_units(x, order, "frame", 50)[[3, 0]], 0)


def test_whisper_prompt_rows_and_pieces(whisper):
    tok = whisper.tokenizer
    assert [tok.id_to_piece(i) for i in whisper.prompt] == ["<|en|>", "<|transcribe|>", "<|notimestamps|>"]
    assert [tok.id_to_piece(i) for i in tok.prompt_ids("st", "it", "en")] == [
        "<|it|>",
        "<|translate|>",
        "<|notimestamps|>",
    ]
    pieces = [tok.id_to_piece(i) for i in [*whisper.prompt, 70, 71]]
    assert tok.split_prompt(pieces) == 3
    assert all(tok.piece_to_id(p) == i for p, i in zip(pieces, [*whisper.prompt, 70, 71]))
    assert (
        tok.decode([*whisper.prompt, *tok.tok("the sea", add_special_tokens=False).input_ids, tok.eos_id])
        == "the sea"
    )


def test_utterance_longer_than_the_window_is_an_error(whisper):
    card = read_model_card(whisper.card_path)
    with pytest.raises(Exception, match="exceeds the model's 10 s input window"):
        model_features(load_extractor(card), _audio(10.5, 0), 16000, True, "m.tsv:7")


# --------------------------------------------------------------------------- bad input
def _copy(folders, kind, tmp_path):
    dest = tmp_path / kind
    shutil.copytree(folders[kind], dest)
    return dest


def _edit_config(folder, **changes):
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(changes)
    (folder / "config.json").write_text(json.dumps(cfg))


def test_bad_entries_stop_with_the_key_and_the_path(folders, tmp_path):
    entry = {"languages": ["en"], "tasks": ["asr"]}
    with pytest.raises(ConfigError, match=r"models\.w\.path: .*nowhere is not a folder"):
        check_hf_entry("w", {**entry, "path": str(tmp_path / "nowhere")}, DATA)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=r"models\.w\.path: .*empty has no config\.json"):
        check_hf_entry("w", {**entry, "path": str(empty)}, DATA)
    text_only = _copy(folders, "whisper", tmp_path / "a")
    _edit_config(text_only, model_type="gpt2", is_encoder_decoder=False)
    with pytest.raises(ConfigError, match=r"models\.w\.path: .*config\.json is not an encoder-decoder"):
        check_hf_entry("w", {**entry, "path": str(text_only)}, DATA)
    remote = _copy(folders, "speech2text", tmp_path / "b")
    _edit_config(remote, auto_map={"AutoModelForSpeechSeq2Seq": "modeling_fama.FamaForConditionalGeneration"})
    with pytest.raises(
        ConfigError, match=r"models\.w\.trust_remote_code: .*config\.json names its own model code"
    ):
        check_hf_entry("w", {**entry, "path": str(remote)}, DATA)
    ok = check_hf_entry("w", {**entry, "path": str(remote), "trust_remote_code": True}, DATA)
    assert ok["trust_remote_code"] and ok["subsampling"] == 4
    with pytest.raises(
        ConfigError, match=r"models\.w\.attn_implementation: 'sdpa' does not return cross-attention"
    ):
        check_hf_entry("w", {**entry, "path": str(folders["whisper"]), "attn_implementation": "sdpa"}, DATA)
    with pytest.raises(ConfigError, match=r"models\.w\.tasks: Whisper translates into English only"):
        check_hf_entry("w", {"languages": ["en"], "tasks": ["st"], "path": str(folders["whisper"])}, DATA)
    with pytest.raises(ConfigError, match=r"models\.w\.dims: a huggingface model is not trained here"):
        check_hf_entry("w", {**entry, "path": str(folders["whisper"]), "dims": {}}, DATA)
    no_weights = _copy(folders, "whisper", tmp_path / "c")
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match=r"models\.w\.path: .* has no weights"):
        check_hf_entry("w", {**entry, "path": str(no_weights)}, DATA)


def test_a_prompt_token_the_tokenizer_lacks_is_an_error(folders, tmp_path_factory):
    path = _card(folders, "whisper", tmp_path_factory, prompt=["<|{src}|>", "<|nosuchtask|>"])
    _, tok = load_for_inference(path)
    with pytest.raises(ConfigError, match=r"models\.whisper\.prompt\[1\]: '<\|nosuchtask\|>'"):
        tok.prompt_ids("asr", "en", "en")


def test_card_changes_with_the_weights(folders, tmp_path):
    folder = _copy(folders, "speech2text", tmp_path)
    info = check_hf_entry("s", {"path": str(folder), "languages": ["en"], "tasks": ["asr"]}, DATA)
    a = write_model_card(info, hf_folder_files(folder), tmp_path / "a.json")
    (folder / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes() + b" ")
    b = write_model_card(info, hf_folder_files(folder), tmp_path / "b.json")
    assert a["files"]["model.safetensors"] != b["files"]["model.safetensors"]
    assert {k: v for k, v in a["files"].items() if k != "model.safetensors"} == {
        k: v for k, v in b["files"].items() if k != "model.safetensors"
    }


def test_config_keys_of_the_two_sources_do_not_mix(tmp_path):
    from caspes.core.config import check_config, load_config

    base = load_config(Path(__file__).resolve().parents[2] / "configs" / "ci.yaml")
    ours = copy.deepcopy(base)
    ours["models"]["base"]["path"] = "/models/x"
    with pytest.raises(ConfigError, match=r"models\.base\.path: only for 'source: huggingface' models"):
        check_config(ours)
    theirs = copy.deepcopy(base)
    theirs["models"]["w"] = {"source": "huggingface", "languages": ["en"], "tasks": ["asr"]}
    with pytest.raises(ConfigError, match=r"models\.w\.path: a huggingface model needs the path"):
        check_config(theirs)
    missing = copy.deepcopy(base)
    del missing["models"]["base"]["dims"]
    with pytest.raises(ConfigError, match=r"models\.base\.dims: required for a model trained here"):
        check_config(missing)


def test_whisper_pieces_group_into_words_for_timestamps(whisper):
    from caspes.analysis.timestamps import group_words, words_text

    tok = whisper.tokenizer
    pieces = tok.tok.convert_ids_to_tokens(tok.tok(" the sea shore", add_special_tokens=False).input_ids)
    assert tok.word_start == "Ġ" and len(pieces) > 3
    groups = group_words(pieces, tok.word_start)
    assert words_text(pieces, groups, tok.pieces_to_text) == ["the", "sea", "shore"]
    assert words_text(["▁the", "▁ca", "t"], group_words(["▁the", "▁ca", "t"])) == ["the", "cat"]


@pytest.mark.parametrize("unit", ["cell", "frame", "encoder"])
def test_deletion_curve_runs_on_an_adapted_model(whisper, unit):
    """Every step re-decodes each utterance alone, occluded with its per-bin mean and padded as
    the clean input; at 0% the hypotheses are the clean decoding's."""
    from caspes.explain.deletion import deletion_curve

    tok = whisper.tokenizer
    options = DecodingOptions(beam_size=2, max_len_b=5)
    feats = {f"u{k}": f for k, f in enumerate(whisper.feats)}
    with torch.inference_mode():
        clean = [decode_batch(whisper.model, [f], [whisper.prompt], options)[0] for f in whisper.feats]
    rows = [
        {
            "id": uid,
            "reference": "the sea",
            "pieces": " ".join(tok.id_to_piece(i) for i in [*whisper.prompt, *ids]),
        }
        for uid, ids in zip(feats, clean)
    ]
    size = {
        "cell": lambda f: f.size,
        "frame": lambda f: f.shape[0],
        "encoder": lambda f: -(-f.shape[0] // 2),
    }[unit]
    orders = {uid: np.arange(size(f))[::-1].copy() for uid, f in feats.items()}
    res = deletion_curve(whisper.model, tok, feats, rows, orders, unit, "asr", options, step_percent=50)
    assert res.percents == [0, 50, 100] and len(res.scores) == 3
    at_zero = [h["hypothesis"] for h in res.hypotheses if h["percent"] == "0"]
    assert at_zero == [tok.decode(ids) for ids in clean]
