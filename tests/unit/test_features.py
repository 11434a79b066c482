import numpy as np
import pytest
import torch
import torchaudio

from caspes.core.audio import write_audio
from caspes.core.manifest import DataError, read_manifest, write_manifest
from caspes.core.zipstore import read_archive_array
from caspes.features import FbankOptions, FeatureReader, extract_split, fbank, utterance_cmvn


def _tone(seconds=0.5, rate=16000, freq=300.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def test_fbank_equals_direct_torchaudio_call():
    wav = _tone()
    ours = fbank(wav, 16000)
    direct = torchaudio.compliance.kaldi.fbank(
        torch.from_numpy(wav).unsqueeze(0) * 2**15, num_mel_bins=80, sample_frequency=16000
    ).numpy()
    assert ours.shape == (48, 80)  # 1 + (500 ms - 25 ms) // 10 ms
    np.testing.assert_array_equal(ours, direct)


def test_fbank_resamples_other_rates():
    wav16 = _tone(rate=16000)
    wav8 = _tone(rate=8000)
    assert fbank(wav8, 8000).shape == fbank(wav16, 16000).shape


def test_utterance_cmvn_numpy_and_torch():
    x = np.random.default_rng(1).normal(3.0, 2.0, size=(50, 80)).astype(np.float32)
    x[:, 5] = 7.0  # constant bin: variance floor, output 0
    y = utterance_cmvn(x)
    np.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(np.delete(y, 5, axis=1).std(axis=0), 1, atol=1e-4)
    assert np.all(y[:, 5] == 0)
    yt = utterance_cmvn(torch.from_numpy(x))
    np.testing.assert_allclose(yt.numpy(), y, atol=1e-5)


def _manifest(tmp_path, rows):
    path = tmp_path / "split.tsv"
    write_manifest(path, rows)
    return path


def _row(uid, audio):
    return {
        "id": uid,
        "audio": audio,
        "n_frames": 0,
        "src_text": "a b",
        "tgt_text": "c d",
        "speaker": "s",
        "src_lang": "en",
        "tgt_lang": "it",
    }


def test_extract_split_writes_archive_and_manifest(tmp_path):
    for i in range(3):
        write_audio(tmp_path / "audio" / f"u{i}.wav", _tone(0.3 + 0.1 * i, seed=i), 16000)
    manifest = _manifest(tmp_path, [_row(f"u{i}", f"audio/u{i}.wav") for i in range(3)])
    n = extract_split(manifest, tmp_path / "split.fbank.zip", tmp_path / "split.fbank.tsv", progress=False)
    assert n == 3
    rows = read_manifest(tmp_path / "split.fbank.tsv")
    assert [int(r["n_frames"]) for r in rows] == [28, 38, 48]
    for i, row in enumerate(rows):
        stored = read_archive_array(row["audio"], tmp_path / "split.fbank.tsv")
        wav = _tone(0.3 + 0.1 * i, seed=i)
        # WAV is 16-bit: compare with fbank of the quantised samples.
        np.testing.assert_allclose(stored, fbank(np.round(wav * 32767) / 32767, 16000), atol=0.05)
    reader = FeatureReader(tmp_path / "split.fbank.tsv")
    assert len(reader) == 3 and "u1" in reader
    np.testing.assert_allclose(reader["u1"].mean(axis=0), 0, atol=1e-4)
    raw = FeatureReader(tmp_path / "split.fbank.tsv", cmvn=False)["u1"]
    np.testing.assert_allclose(reader["u1"], utterance_cmvn(raw), atol=1e-6)
    with pytest.raises(KeyError, match="no utterance 'zz'"):
        reader["zz"]


def test_extract_split_accepts_stored_features_and_checks_shape(tmp_path):
    feats = np.random.default_rng(0).standard_normal((20, 80)).astype(np.float32)
    np.save(tmp_path / "u0.npy", feats)
    np.save(tmp_path / "bad.npy", feats[:, :40])
    manifest = _manifest(tmp_path, [_row("u0", "u0.npy")])
    extract_split(manifest, tmp_path / "o.fbank.zip", tmp_path / "o.fbank.tsv", progress=False)
    np.testing.assert_array_equal(FeatureReader(tmp_path / "o.fbank.tsv", cmvn=False)["u0"], feats)
    manifest = _manifest(tmp_path, [_row("u0", "u0.npy"), _row("bad", "bad.npy")])
    with pytest.raises(DataError, match=r"split\.tsv:3: stored features have shape \(20, 40\)"):
        extract_split(manifest, tmp_path / "p.fbank.zip", tmp_path / "p.fbank.tsv", progress=False)


def test_extract_split_missing_audio_names_file(tmp_path):
    manifest = _manifest(tmp_path, [_row("u0", "audio/none.wav")])
    with pytest.raises(DataError, match="none.wav: audio file not found"):
        extract_split(
            manifest, tmp_path / "o.fbank.zip", tmp_path / "o.fbank.tsv", FbankOptions(), progress=False
        )
