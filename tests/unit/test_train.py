"""Tests of caspes.train: targets, batching, SpecAugment, losses, schedule, overfitting,
bitwise resumption and checkpoint averaging, on a tiny synthetic corpus."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

from caspes import __version__
from caspes.core.manifest import write_manifest
from caspes.features import FeatureArchiveWriter, FeatureReader
from caspes.model import ModelDimensions, S2TModel, S2TOutput
from caspes.model.checkpoint import average_checkpoints, load_checkpoint, load_model, save_checkpoint
from caspes.tokenizer import EOS_ID, PAD_ID, Tokenizer, train_tokenizer
from caspes.train import loop
from caspes.train.augment import spec_augment
from caspes.train.checkpoints import discard_stale_checkpoints
from caspes.train.config import TrainConfig
from caspes.train.data import TrainingData, build_target
from caspes.train.history import HISTORY_COLUMNS
from caspes.train.loop import train
from caspes.train.losses import CTC_BLANK_ID, compute_losses
from caspes.train.schedule import lr_at_step, make_scheduler

EN = "the cat dog sees a red blue big small bird runs jumps".split()
IT = "il gatto cane vede un rosso blu grande piccolo uccello corre salta".split()
LENGTHS = [40, 48, 56, 64, 72, 80, 88, 96, 104, 112, 150, 350]  # the last one is "too long"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """12 en->it utterances (random features), a 10-utterance subset, a tokenizer."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    rows = []
    with FeatureArchiveWriter(root / "fbank.zip") as writer:
        for k, n in enumerate(LENGTHS):
            words = rng.integers(0, len(EN), size=int(rng.integers(3, 6)))
            uid = f"utt{k:02d}"
            writer.add(uid, rng.normal(size=(n, 80)).astype(np.float32) * 3 + 5)
            rows.append(
                dict(
                    id=uid,
                    n_frames=n,
                    src_text=" ".join(EN[w] for w in words),
                    tgt_text=" ".join(IT[w] for w in words[::-1]),
                    speaker="spk",
                    src_lang="en",
                    tgt_lang="it",
                )
            )
    for r in rows:
        r["audio"] = writer.references[r["id"]]
    write_manifest(root / "all.tsv", rows)
    write_manifest(root / "train10.tsv", rows[:10])
    write_manifest(root / "dev.tsv", rows[:4])
    texts = [r["src_text"] for r in rows] + [r["tgt_text"] for r in rows] + [" ".join(EN), " ".join(IT)]
    train_tokenizer(texts, root / "spm.model", ["en", "it"], vocab_size=64)
    tok = Tokenizer(root / "spm.model")
    return dict(root=root, rows=rows, tok=tok)


def _reader(corpus, name):
    return FeatureReader(corpus["root"] / f"{name}.tsv")


def _dims(tok, dropout=0.0) -> ModelDimensions:
    return ModelDimensions(
        d_model=32,
        encoder_layers=2,
        decoder_layers=1,
        encoder_heads=2,
        decoder_heads=2,
        encoder_ffn=64,
        decoder_ffn=64,
        vocab_size=len(tok),
        conv_kernel=15,
        conv_channels=32,
        ctc_src_layer=1,
        dropout=dropout,
    )


def _config(**kw) -> TrainConfig:
    base = dict(
        seed=3,
        max_steps=10,
        peak_lr=3e-3,
        warmup_steps=10,
        max_frames_per_batch=300,
        max_duration_frames=200,
        checkpoint_every=5,
        keep_last=3,
        dev_every=0,
        device="cpu",
        num_threads=2,
        log_every=5,
    )
    base.update(kw)
    return TrainConfig(**base)


def _data(corpus, config, manifest="all", **kw):
    return TrainingData.from_config([(_reader(corpus, manifest), corpus["tok"])], config, cache=True, **kw)


def _history(path):
    lines = path.read_text().splitlines()
    header = lines[0].split("\t")
    return header, [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]]


# --------------------------------------------------------------------------- config / schedule
def test_config_roundtrip_and_validation():
    cfg = TrainConfig.from_dict({"max_steps": 7, "betas": [0.9, 0.98], "specaugment_policy": "lb"})
    assert cfg.betas == (0.9, 0.98) and cfg.specaug_freq_masks == 1 and cfg.specaug_time_width == 100
    assert TrainConfig.from_dict(cfg.asdict()) == cfg
    assert cfg.effective_st_probability == 0.0
    assert TrainConfig(stage="asr_st", st_probability=0.3).effective_st_probability == 0.3
    with pytest.raises(ValueError, match="unknown"):
        TrainConfig.from_dict({"max_stepz": 1})
    with pytest.raises(ValueError, match="stage"):
        TrainConfig(stage="st")
    with pytest.raises(ValueError, match="warmup"):
        TrainConfig(warmup_steps=0)
    with pytest.raises(ValueError, match="cpu_bf16"):
        TrainConfig(cpu_bf16="fast")
    assert TrainConfig.from_dict({"cpu_bf16": "auto"}).cpu_bf16 == "auto"


def test_noam_schedule():
    cfg = TrainConfig(peak_lr=2e-3, warmup_steps=100)
    lrs = [lr_at_step(s, cfg) for s in range(1, 1001)]
    assert int(np.argmax(lrs)) + 1 == 100
    assert lrs[99] == pytest.approx(2e-3)
    assert lrs[49] == pytest.approx(1e-3)  # linear warm-up
    assert all(a < b for a, b in zip(lrs[:99], lrs[1:100], strict=True))
    for s in (100, 150, 400, 1000):  # lr * sqrt(step) constant after the warm-up
        assert lr_at_step(s, cfg) * math.sqrt(s) == pytest.approx(2e-3 * math.sqrt(100))
    assert lr_at_step(400, cfg) == pytest.approx(1e-3)
    const = TrainConfig(peak_lr=5e-4, lr_schedule="constant")
    assert {lr_at_step(s, const) for s in (1, 10, 10_000)} == {5e-4}
    # The torch scheduler gives the optimizer lr_at_step(s) for the s-th update.
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg.peak_lr)
    sched = make_scheduler(opt, cfg)
    for s in range(1, 300):
        assert opt.param_groups[0]["lr"] == pytest.approx(lr_at_step(s, cfg))
        opt.step()
        sched.step()


# --------------------------------------------------------------------------- targets / data
def test_targets_asr_and_st(corpus):
    tok = corpus["tok"]
    assert build_target(7, [11, 12]) == ([EOS_ID, 7, 11, 12], [7, 11, 12, EOS_ID])
    data = _data(corpus, _config(stage="asr_st", st_probability=0.5))
    i = 0
    utt = data.utterances[i]
    row = next(r for r in corpus["rows"] if r["id"] == utt.uid)
    src = tok.encode(row["src_text"])
    tgt = tok.encode(row["tgt_text"])
    batch = data.collate([i, i], [False, True])
    en, it = tok.lang_id("en"), tok.lang_id("it")
    for k, (tag, pieces) in enumerate([(en, src), (it, tgt)]):
        n = len(pieces) + 2
        assert batch.decoder_input[k, :n].tolist() == [EOS_ID, tag, *pieces]
        assert batch.target[k, :n].tolist() == [tag, *pieces, EOS_ID]
        assert (batch.decoder_input[k, n:] == PAD_ID).all() and (batch.target[k, n:] == PAD_ID).all()
        # CTC: source pieces for the src head, this sample's target-text pieces for the tgt head; no tag.
        assert batch.ctc_src_targets[k, : batch.ctc_src_lengths[k]].tolist() == src
        assert batch.ctc_tgt_targets[k, : batch.ctc_tgt_lengths[k]].tolist() == pieces
    assert batch.is_st.tolist() == [False, True]
    assert CTC_BLANK_ID == 0 and all(0 not in u.src_ids + u.tgt_ids for u in data.utterances)

    n = len(data)
    assert not data.st_choices(1, 0.0).any()
    assert data.st_choices(1, 1.0).all()
    draws = np.concatenate([data.st_choices(e, 0.5) for e in range(1, 41)])
    assert 0.4 < draws.mean() < 0.6 and draws.size == 40 * n
    assert np.array_equal(data.st_choices(3, 0.5), data.st_choices(3, 0.5))
    assert np.array_equal(data.st_choices(3, 0.5), _data(corpus, _config(stage="asr_st")).st_choices(3, 0.5))
    # Stage asr ignores st_probability; it needs no translation.
    assert _config(st_probability=0.9).effective_st_probability == 0.0
    assert not _data(corpus, _config()).need_translation


def test_ce_ignores_language_tag_and_padding(corpus):
    data = _data(corpus, _config())
    batch = data.collate([0, 3])
    b, i = batch.target.shape
    v = len(corpus["tok"])
    torch.manual_seed(0)
    logits = torch.randn(b, i, v)
    out = S2TOutput(
        logits=logits,
        encoder_lengths=torch.tensor([10, 10]),
        encoder_padding_mask=torch.zeros(b, 10, dtype=torch.bool),
    )
    cfg = _config(label_smoothing=0.1)
    ce = compute_losses(out, batch, cfg)["ce"]
    changed = logits.clone()
    changed[:, 0] = 100 * torch.randn(b, v)  # tag position
    changed[batch.target.eq(PAD_ID)] = 50.0  # padded positions
    out2 = S2TOutput(
        logits=changed, encoder_lengths=out.encoder_lengths, encoder_padding_mask=out.encoder_padding_mask
    )
    assert torch.equal(compute_losses(out2, batch, cfg)["ce"], ce)
    # Reference: plain NLL without smoothing over the non-tag, non-pad positions.
    lp = torch.log_softmax(logits[:, 1:], -1)
    tgt = batch.target[:, 1:]
    mask = tgt.ne(PAD_ID)
    ref = -lp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)[mask].mean()
    assert torch.allclose(compute_losses(out, batch, _config(label_smoothing=0.0))["ce"], ref)


def test_batching_and_length_filter(corpus, caplog):
    with caplog.at_level(logging.INFO, logger="caspes.train"):
        data = _data(corpus, _config(max_frames_per_batch=300, max_duration_frames=200))
    assert len(data) == 11 and dict(data.skipped) == {"too_long": 1}
    assert data.skips[0].id == "utt11" and "all.tsv:13" in data.skips[0].source
    assert "too_long 1" in caplog.text
    for epoch in (1, 2, 3):
        batches = data.epoch_batches(epoch)
        assert sorted(i for b in batches for i in b) == list(range(len(data)))
        for b in batches:
            frames = [int(data.n_frames[i]) for i in b]
            assert len(b) * max(frames) <= 300 and sum(frames) <= 300
    assert data.epoch_batches(1) != data.epoch_batches(2)
    assert data.epoch_batches(2) == _data(corpus, _config()).epoch_batches(2)  # deterministic for the seed

    # Without a length filter the 350-frame utterance (> 300 frames) forms a batch of its own.
    data = _data(corpus, _config(max_frames_per_batch=300, max_duration_frames=None))
    assert len(data) == 12 and not data.skips
    long_index = next(i for i, u in enumerate(data.utterances) if u.n_frames == 350)
    assert [long_index] in data.batches
    for b in data.batches:
        if b != [long_index]:
            assert len(b) * max(int(data.n_frames[i]) for i in b) <= 300


def test_need_translation_skips_are_counted(corpus, tmp_path):
    rows = [dict(r) for r in corpus["rows"][:3]]
    rows[1]["tgt_text"] = ""
    rows[2]["src_text"] = ""
    for r in rows:
        r["audio"] = str(corpus["root"] / "fbank.zip") + ":" + r["audio"].split(":", 1)[1]
    write_manifest(tmp_path / "m.tsv", rows)
    reader = FeatureReader(tmp_path / "m.tsv")
    data = TrainingData([(reader, corpus["tok"])], max_frames_per_batch=1000, need_translation=True)
    assert len(data) == 1 and dict(data.skipped) == {"no_translation": 1, "empty_transcript": 1}
    assert data.features(0).shape == (LENGTHS[0], 80)


# --------------------------------------------------------------------------- SpecAugment
def test_spec_augment_masks_with_zeros():
    cfg = _config(
        specaug_freq_masks=2,
        specaug_freq_width=27,
        specaug_time_masks=2,
        specaug_time_width=20,
        specaug_time_max_fraction=0.2,
    )
    lengths = torch.tensor([60, 30])
    x = torch.full((2, 60, 80), 1.5)
    x[1, 30:] = 0.0  # padding
    x_before = x.clone()
    seen_masked = False
    for seed in range(20):
        y = spec_augment(x, lengths, cfg, np.random.default_rng(seed))
        assert torch.equal(x[1, 30:], y[1, 30:])  # padding untouched
        assert ((y == 0) | (y == x)).all()  # masked cells are exactly 0, others unchanged
        for b, n in enumerate(lengths.tolist()):
            valid = y[b, :n]
            zero_rows = int((valid == 0).all(dim=1).sum())
            zero_cols = int((valid == 0).all(dim=0).sum())
            assert zero_rows <= 2 * min(20, math.floor(0.2 * n))
            assert zero_cols <= 2 * 27
            seen_masked |= bool((valid == 0).any())
    assert seen_masked
    y1 = spec_augment(x, lengths, cfg, np.random.default_rng(5))
    y2 = spec_augment(x, lengths, cfg, np.random.default_rng(5))
    assert torch.equal(y1, y2) and torch.equal(x, x_before)  # the input is not modified


@pytest.mark.parametrize("enabled", [True, False])
def test_spec_augment_only_on_training_batches(corpus, tmp_path, monkeypatch, enabled):
    calls = []
    original = spec_augment

    def spy(features, lengths, config, rng):
        calls.append(features.shape)
        return original(features, lengths, config, rng)

    monkeypatch.setattr(loop, "spec_augment", spy)
    cfg = _config(max_steps=3, dev_every=1, checkpoint_every=0, specaugment=enabled)
    dev = _data(corpus, cfg, "dev", name="dev")
    train(_dims(corpus["tok"]), cfg, _data(corpus, cfg), dev, tmp_path, progress=False)
    assert len(calls) == (3 if enabled else 0)  # never on the dev batches
    _, rows = _history(tmp_path / "history.tsv")
    assert all(r["dev_loss"] != "" for r in rows)


# --------------------------------------------------------------------------- training
def test_overfit_ten_utterances(corpus, tmp_path):
    tok = corpus["tok"]
    cfg = _config(
        max_steps=80,
        peak_lr=5e-3,
        warmup_steps=15,
        label_smoothing=0.0,
        specaugment=False,
        max_frames_per_batch=10_000,
        checkpoint_every=0,
        log_every=50,
        seed=1,
    )
    data = _data(corpus, cfg, "train10")
    assert len(data) == 10 and len(data.batches) == 1
    last = train(_dims(tok, dropout=0.0), cfg, data, None, tmp_path, progress=False)
    _, rows = _history(tmp_path / "history.tsv")
    ce = [float(r["ce"]) for r in rows]
    assert len(rows) == 80 and ce[-1] < 0.1 * ce[0]
    model, ckpt = load_model(last)
    assert not model.training and ckpt["step"] == 80
    batch = data.collate(data.batches[0])
    with torch.no_grad():
        logits = model(batch.features, batch.lengths, batch.decoder_input).logits
    pred, tgt = logits.argmax(-1)[:, 1:], batch.target[:, 1:]
    mask = tgt.ne(PAD_ID)
    accuracy = float((pred.eq(tgt) & mask).sum() / mask.sum())
    assert accuracy > 0.9


def test_cpu_bf16_trains_linear_layers_in_bf16_and_attention_in_fp32(corpus, tmp_path, monkeypatch, caplog):
    """cpu_bf16 on a CPU: the attention products get float32 inputs while the linear layers run
    in bf16; the run differs from the fp32 one but learns as well on a short overfit."""
    seen: list[torch.dtype] = []
    original = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, **kw):
        seen.append(q.dtype)
        return original(q, k, v, **kw)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    linear_dtypes: list[torch.dtype] = []
    hook = torch.nn.modules.module.register_module_forward_hook(
        lambda m, i, o: linear_dtypes.append(o.dtype) if isinstance(m, torch.nn.Linear) else None
    )
    cfg = dict(max_steps=40, peak_lr=5e-3, warmup_steps=10, label_smoothing=0.0, specaugment=False)
    cfg.update(max_frames_per_batch=10_000, checkpoint_every=0, seed=1)
    ce = {}
    try:
        for precision in (False, True):
            seen.clear()
            linear_dtypes.clear()
            config = _config(cpu_bf16=precision, **cfg)
            with caplog.at_level(logging.INFO, logger="caspes.train.loop"):
                train(
                    _dims(corpus["tok"]),
                    config,
                    _data(corpus, config, "train10"),
                    None,
                    tmp_path / str(precision),
                    progress=False,
                )
            assert seen and set(seen) == {torch.float32}
            assert set(linear_dtypes) == ({torch.bfloat16} if precision else {torch.float32})
            _, rows = _history(tmp_path / str(precision) / "history.tsv")
            ce[precision] = [float(r["ce"]) for r in rows]
    finally:
        hook.remove()
    assert "(bf16, attention in float32)" in caplog.text
    assert ce[True] != ce[False]
    assert ce[True][-1] < 0.2 * ce[True][0] and ce[False][-1] < 0.2 * ce[False][0]


def test_resume_is_bitwise_identical(corpus, tmp_path, caplog):
    tok = corpus["tok"]
    dims = _dims(tok, dropout=0.1)  # dropout + SpecAugment + ST draws: every RNG matters
    cfg = _config(
        stage="asr_st",
        st_probability=0.5,
        max_steps=12,
        checkpoint_every=5,
        keep_last=2,
        dev_every=4,
        warmup_steps=6,
        max_frames_per_batch=250,
    )
    data = _data(corpus, cfg)
    dev = _data(corpus, cfg, "dev", name="dev")
    assert len(data.batches) >= 4  # several epochs in 12 steps

    a = train(dims, cfg, data, dev, tmp_path / "a", progress=False)

    class Killed(RuntimeError):
        pass

    def kill_at_7(step, parts):
        if step == 7:
            raise Killed

    with pytest.raises(Killed):
        train(dims, cfg, data, dev, tmp_path / "b", progress=False, callback=kill_at_7)
    assert load_checkpoint(tmp_path / "b" / "checkpoint_last.pt")["step"] == 5
    _, rows_killed = _history(tmp_path / "b" / "history.tsv")
    assert len(rows_killed) == 7  # rows 6 and 7 are on disk but not in the checkpoint
    # Snakemake deletes a killed job's declared output before rerunning it: resume from checkpoint_5.pt.
    (tmp_path / "b" / "checkpoint_last.pt").unlink()
    with caplog.at_level(logging.INFO, logger="caspes.train"):
        b = train(dims, cfg, data, dev, tmp_path / "b", progress=False)
    assert "resuming from step 5" in caplog.text

    ca, cb = load_checkpoint(a), load_checkpoint(b)
    assert (
        ca["step"] == cb["step"] == 12
        and ca["epoch"] == cb["epoch"]
        and ca["batch_in_epoch"] == cb["batch_in_epoch"]
    )
    assert ca["model"].keys() == cb["model"].keys()
    for name in ca["model"]:
        assert torch.equal(ca["model"][name], cb["model"][name]), name
    for sa, sb in zip(ca["optimizer"]["state"].values(), cb["optimizer"]["state"].values(), strict=True):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    ha, ra = _history(tmp_path / "a" / "history.tsv")
    hb, rb = _history(tmp_path / "b" / "history.tsv")
    assert ha == hb == list(HISTORY_COLUMNS) and len(ra) == len(rb) == 12
    for x, y in zip(ra, rb, strict=True):
        x.pop("wall_s"), y.pop("wall_s")
        assert x == y
    assert [r["step"] for r in ra] == [str(s) for s in range(1, 13)]
    assert [r["dev_loss"] != "" for r in ra] == [s % 4 == 0 for s in range(1, 13)]
    for r in ra:  # the logged lr is the schedule's lr of that update
        assert float(r["lr"]) == pytest.approx(lr_at_step(int(r["step"]), cfg), rel=1e-6)
    # keep_last=2 numbered checkpoints (5 and 10), and the last one.
    assert sorted(p.name for p in (tmp_path / "a").glob("checkpoint_*.pt")) == [
        "checkpoint_10.pt",
        "checkpoint_5.pt",
        "checkpoint_last.pt",
    ]
    # Self-describing checkpoint.
    assert ca["dims"] == dims.asdict() and ca["train_config"] == cfg.asdict()
    assert ca["tokenizer"]["model"] == tok.path.read_bytes() and ca["tokenizer"]["path"] == str(tok.path)
    assert ca["caspes_version"] == __version__ and ca["history_rows"] == 12
    assert {"python", "numpy", "torch"} <= set(ca["rng"])
    # Nothing left to do: returns the existing checkpoint untouched.
    before = (tmp_path / "a" / "checkpoint_last.pt").stat().st_mtime_ns
    assert train(dims, cfg, data, dev, tmp_path / "a", progress=False) == a
    assert (tmp_path / "a" / "checkpoint_last.pt").stat().st_mtime_ns == before


def test_init_checkpoint_loads_weights_only(corpus, tmp_path):
    tok = corpus["tok"]
    dims = _dims(tok)
    cfg = _config(max_steps=2, checkpoint_every=0)
    data = _data(corpus, cfg)
    first = train(dims, cfg, data, None, tmp_path / "asr", progress=False)
    model, _ = load_model(first)
    cfg2 = _config(max_steps=1, checkpoint_every=0, stage="asr_st", peak_lr=1e-9, lr_schedule="constant")
    second = train(
        dims, cfg2, _data(corpus, cfg2), None, tmp_path / "st", init_checkpoint=first, progress=False
    )
    ck = load_checkpoint(second)
    assert ck["step"] == 1 and ck["scheduler"]["last_epoch"] == 1
    assert len(ck["optimizer"]["state"]) > 0
    # One update with lr 1e-9 from the ASR weights: parameters nearly unchanged.
    for name, p in model.named_parameters():
        assert torch.allclose(p.float(), ck["model"][name].float(), atol=1e-5), name


def test_average_checkpoints(corpus, tmp_path):
    dims = _dims(corpus["tok"])
    paths, states = [], []
    for k in range(3):
        torch.manual_seed(k)
        model = S2TModel(dims)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_()
                m.num_batches_tracked.fill_(10 * (k + 1))
        states.append({n: t.clone() for n, t in model.state_dict().items()})
        paths.append(
            save_checkpoint(
                tmp_path / f"c{k}.pt",
                {
                    "dims": dims.asdict(),
                    "model": model.state_dict(),
                    "optimizer": {"x": 1},
                    "step": k,
                    "tokenizer": {"path": "spm.model", "model": b"abc"},
                    "caspes_version": __version__,
                    "train_config": _config().asdict(),
                },
            )
        )
    out = average_checkpoints(paths, tmp_path / "avg.pt")
    avg = load_checkpoint(out)
    assert "optimizer" not in avg and avg["dims"] == dims.asdict() and avg["tokenizer"]["model"] == b"abc"
    assert avg["step"] == 2 and avg["averaged_from"] == [str(p) for p in paths]
    for name, t in avg["model"].items():
        if t.is_floating_point():
            ref = torch.stack([s[name] for s in states]).mean(0)
            assert torch.allclose(t, ref, atol=1e-7, rtol=1e-6), name
        else:
            assert torch.equal(t, states[-1][name]), name
    assert any(n.endswith("num_batches_tracked") for n in avg["model"])
    model, _ = load_model(out)
    assert not model.training


def test_changed_settings_discard_checkpoints_but_more_steps_resume(corpus, tmp_path, caplog):
    tok = corpus["tok"]
    dims = _dims(tok)
    cfg = _config(max_steps=4, checkpoint_every=2)
    train(dims, cfg, _data(corpus, cfg), None, tmp_path, progress=False)
    # More steps, same settings: nothing discarded, training continues.
    more = _config(max_steps=6, checkpoint_every=2)
    assert not discard_stale_checkpoints(tmp_path, dims, more, tok)
    # Another learning rate: the old checkpoints and history go.
    other = _config(max_steps=6, checkpoint_every=2, peak_lr=1e-4)
    with caplog.at_level(logging.WARNING, logger="caspes.train"):
        assert discard_stale_checkpoints(tmp_path, dims, other, tok)
    assert "peak_lr" in caplog.text and "starting over" in caplog.text
    assert not list(tmp_path.glob("checkpoint_*.pt")) and not (tmp_path / "history.tsv").exists()
    assert not discard_stale_checkpoints(tmp_path, dims, other, tok)
