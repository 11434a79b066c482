import numpy as np
import pytest

from caspes.core.audio import is_archive_reference, n_frames_for_duration, read_audio, write_audio
from caspes.core.manifest import (
    DataError,
    Skip,
    format_word_times,
    parse_word_times,
    read_manifest,
    read_skipped,
    write_manifest,
    write_skipped,
)
from caspes.core.zipstore import read_archive_array
from caspes.features import FeatureArchiveWriter


def _row(uid, **kw):
    row = {
        "id": uid,
        "audio": f"audio/{uid}.wav",
        "n_frames": 100,
        "src_text": "the cat",
        "tgt_text": "il gatto",
        "speaker": "s1",
        "src_lang": "en",
        "tgt_lang": "it",
    }
    row.update(kw)
    return row


def test_manifest_roundtrip_keeps_columns_and_lines(tmp_path):
    path = tmp_path / "m.tsv"
    write_manifest(path, [_row("a"), _row("b", word_times="0.100:0.300 0.350:0.700")])
    header = path.read_text().splitlines()[0].split("\t")
    assert header == [
        "id",
        "audio",
        "n_frames",
        "src_text",
        "tgt_text",
        "speaker",
        "src_lang",
        "tgt_lang",
        "word_times",
    ]
    rows = read_manifest(path)
    assert [r["id"] for r in rows] == ["a", "b"]
    assert [r["_line"] for r in rows] == ["2", "3"]
    assert rows[1]["word_times"] == "0.100:0.300 0.350:0.700"
    assert rows[0]["word_times"] == ""


def test_manifest_errors_name_file_and_line(tmp_path):
    path = tmp_path / "m.tsv"
    path.write_text("id\taudio\tn_frames\ttgt_text\na\tx.wav\t10\thello\na\ty.wav\t10\tagain\n")
    with pytest.raises(DataError, match=r"m\.tsv:3: duplicate id 'a' \(first on line 2\)"):
        read_manifest(path)
    path.write_text("id\taudio\tn_frames\ttgt_text\na\tx.wav\t10\n")
    with pytest.raises(DataError, match=r"m\.tsv:2: expected 4 tab-separated fields, got 3"):
        read_manifest(path)
    path.write_text("id\taudio\ttgt_text\n")
    with pytest.raises(DataError, match=r"m\.tsv:1: missing required column\(s\) \['n_frames'\]"):
        read_manifest(path)
    with pytest.raises(DataError, match="manifest not found"):
        read_manifest(tmp_path / "absent.tsv")


def test_write_manifest_refuses_tabs_in_fields(tmp_path):
    with pytest.raises(DataError, match="contains a tab"):
        write_manifest(tmp_path / "m.tsv", [_row("a", src_text="bad\ttext")])


def test_skipped_report_roundtrip(tmp_path):
    path = tmp_path / "s.tsv"
    skips = [Skip("u1", "m.tsv:4", "missing_audio", "x.wav not found")]
    write_skipped(path, skips)
    assert read_skipped(path) == skips
    write_skipped(path, [])
    assert read_skipped(path) == []
    assert path.read_text() == "id\tsource\treason\tdetail\n"


def test_word_times_roundtrip_and_error():
    times = [(0.0, 0.25), (0.3, 1.0)]
    assert parse_word_times(format_word_times(times)) == times
    with pytest.raises(DataError, match="m.tsv:7: malformed word time"):
        parse_word_times("0.1-0.2", where="m.tsv:7")


def test_fairseq_frame_count():
    assert n_frames_for_duration(1.0) == 98  # int(1 + (1000 - 25) / 10)
    assert n_frames_for_duration(0.025) == 1
    assert n_frames_for_duration(0.01) == 0


def test_feature_archive_references_read_back_each_array(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {f"utt{i}": rng.standard_normal((5 + i, 80)).astype(np.float32) for i in range(4)}
    with FeatureArchiveWriter(tmp_path / "f.zip") as writer:
        for uid, arr in arrays.items():
            writer.add(uid, arr)
    manifest = tmp_path / "f.tsv"
    for uid, arr in arrays.items():
        ref = writer.references[uid]
        assert is_archive_reference(ref) and ref.startswith("f.zip:")
        np.testing.assert_array_equal(read_archive_array(ref, manifest), arr)
    # Byte-identical archive on a second write (fixed timestamps).
    with FeatureArchiveWriter(tmp_path / "g.zip") as w2:
        for uid, arr in arrays.items():
            w2.add(uid, arr)
    assert (tmp_path / "f.zip").read_bytes() == (tmp_path / "g.zip").read_bytes()


def test_feature_archive_bad_reference(tmp_path):
    with FeatureArchiveWriter(tmp_path / "f.zip") as writer:
        writer.add("a", np.zeros((2, 80), np.float32))
    with pytest.raises(DataError, match="outside the archive"):
        read_archive_array("f.zip:10:999999", tmp_path / "m.tsv")
    with pytest.raises(DataError, match="feature archive not found"):
        read_archive_array("nope.zip:0:10", tmp_path / "m.tsv")


def test_audio_roundtrip_and_errors(tmp_path):
    t = np.arange(16000) / 16000
    wav = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    write_audio(tmp_path / "a.wav", wav, 16000)
    back, rate = read_audio(tmp_path / "a.wav")
    assert rate == 16000 and back.shape == wav.shape
    assert np.max(np.abs(back - wav)) < 1e-4  # 16-bit quantisation
    with pytest.raises(DataError, match="audio file not found"):
        read_audio(tmp_path / "missing.wav")
    (tmp_path / "junk.wav").write_bytes(b"not a wav file at all")
    with pytest.raises(DataError, match="junk.wav: unreadable audio"):
        read_audio(tmp_path / "junk.wav")
