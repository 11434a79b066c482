import numpy as np
import pytest

from caspes.core.audio import write_audio
from caspes.core.manifest import DataError, read_manifest, read_skipped, write_manifest
from caspes.data.manifests import corpus_statistics, import_manifest
from caspes.data.policy import UtterancePolicy
from caspes.features import FeatureArchiveWriter


def _row(uid, audio, src="the cat", tgt="il gatto"):
    return {"id": uid, "audio": audio, "n_frames": 0, "src_text": src, "tgt_text": tgt, "speaker": "s"}


@pytest.fixture
def corpus(tmp_path):
    src = tmp_path / "user"
    for uid, seconds in (("ok", 0.5), ("long", 2.0), ("empty", 0.5)):
        write_audio(src / "wav" / f"{uid}.wav", np.zeros(int(seconds * 16000), np.float32), 16000)
    (src / "wav" / "junk.wav").write_bytes(b"junk")
    with FeatureArchiveWriter(src / "fbank.zip") as w:
        w.add("feat", np.zeros((50, 80), np.float32))
    rows = [
        _row("ok", "wav/ok.wav"),
        _row("missing", "wav/missing.wav"),
        _row("junk", "wav/junk.wav"),
        _row("long", "wav/long.wav"),
        _row("empty", "wav/empty.wav", tgt=" "),
        _row("feat", w.references["feat"]),
    ]
    write_manifest(src / "test.tsv", rows, ["id", "audio", "n_frames", "src_text", "tgt_text", "speaker"])
    return src / "test.tsv"


def test_import_manifest_counts_every_skip(tmp_path, corpus):
    out = tmp_path / "results" / "en" / "test.tsv"
    skipped = tmp_path / "results" / "en" / "test.skipped.tsv"
    n, skips = import_manifest(corpus, out, skipped, UtterancePolicy(max_duration_s=1.0), "en", "it")
    assert n == 2
    rows = read_manifest(out)
    assert [r["id"] for r in rows] == ["ok", "feat"]
    assert rows[0]["src_lang"] == "en" and rows[0]["tgt_lang"] == "it"
    # Audio stays in place; paths are rewritten relative to the new manifest.
    assert rows[0]["audio"] == "../../user/wav/ok.wav"
    assert (out.parent / rows[0]["audio"]).is_file()
    assert rows[1]["audio"].startswith("../../user/fbank.zip:")
    reasons = {s.id: (s.reason, s.source) for s in read_skipped(skipped)}
    assert reasons == {
        "missing": ("missing_audio", f"{corpus}:3"),
        "junk": ("unreadable_audio", f"{corpus}:4"),
        "long": ("too_long", f"{corpus}:5"),
        "empty": ("empty_text", f"{corpus}:6"),
    }
    assert dict(skips.counts()) == {"missing_audio": 1, "unreadable_audio": 1, "too_long": 1, "empty_text": 1}
    assert "kept 2 utterances, skipped 4" in skips.report("x", 2)


def test_import_manifest_error_policy_names_file_and_line(tmp_path, corpus):
    with pytest.raises(DataError, match=r"test\.tsv:3: utterance 'missing': missing_audio"):
        import_manifest(
            corpus,
            tmp_path / "o.tsv",
            tmp_path / "o.skipped.tsv",
            UtterancePolicy(on_bad="error"),
            "en",
            "it",
        )


def test_import_manifest_rejects_other_language(tmp_path, corpus):
    rows = read_manifest(corpus)
    for r in rows:
        r["src_lang"], r["tgt_lang"] = "it", "en"
    write_manifest(corpus, rows)
    with pytest.raises(
        DataError, match=r"test\.tsv:2: src_lang is 'it' but this manifest is imported as en->it"
    ):
        import_manifest(corpus, tmp_path / "o.tsv", tmp_path / "o.skipped.tsv", UtterancePolicy(), "en", "it")


def test_policy_validation():
    with pytest.raises(ValueError, match="on_bad"):
        UtterancePolicy(on_bad="drop")


def test_corpus_statistics(tmp_path):
    rows = [
        {
            **_row("a", "x.wav", src="the cat sleeps", tgt="il gatto dorme"),
            "n_frames": 98,
            "src_lang": "en",
            "tgt_lang": "it",
        },
        {
            **_row("b", "y.wav", src="the dog", tgt="il cane"),
            "n_frames": 198,
            "src_lang": "en",
            "tgt_lang": "it",
        },
    ]
    write_manifest(tmp_path / "m.tsv", rows)
    (stats,) = corpus_statistics({("en", "test"): tmp_path / "m.tsv"}, {})
    assert stats["utterances"] == 2 and stats["src_words"] == 5
    assert stats["src_vocabulary"] == 4 and stats["tgt_vocabulary"] == 4
    assert stats["mean_duration_s"] == pytest.approx((0.995 + 1.995) / 2, abs=1e-3)
