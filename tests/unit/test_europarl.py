"""EuroParl-ST raw-release importer, on tiny fixtures in the real layout (m4a made with ffmpeg)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from caspes.core.audio import read_audio, resolve_audio_path
from caspes.core.manifest import DataError, read_manifest, read_skipped
from caspes.data.europarl import EuroparlSplit, import_europarl_st
from caspes.data.policy import UtterancePolicy

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")

SR = 16000
SPEECH_A = "en.20080924.31.3-243"
SPEECH_B = "en.20081008.5.2-101"
# (speech, start, end, en, it) in segments.lst order; A and B interleave on purpose.
SEGMENTS = [
    (SPEECH_A, 0.20, 1.00, "Thank you, Mr President.", "Grazie, signor Presidente."),
    (SPEECH_A, 1.10, 2.60, "The Commission agrees.", "La Commissione è d'accordo."),
    (SPEECH_B, 0.10, 1.90, "I have three points.", "Ho tre punti."),
    (SPEECH_A, 2.60, 2.95, "Thank you.", "Grazie."),
]
SPEAKERS = ["spk1", "spk1", "spk2", "spk1"]


def _chirp(duration: float, f0: float, f1: float) -> np.ndarray:
    """A linear chirp: tonal (so AAC keeps the waveform) with a sharp autocorrelation (so a
    mis-placed cut does not correlate)."""
    t = np.arange(int(round(duration * SR))) / SR
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * duration))
    return (0.5 * np.sin(phase)).astype(np.float32)


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> dict[str, tuple[np.ndarray, Path]]:
    """The two speeches as waveforms and m4a files, encoded once for the module."""
    d = tmp_path_factory.mktemp("m4a")
    waves = {SPEECH_A: _chirp(3.0, 200, 3000), SPEECH_B: _chirp(2.5, 2500, 300)}
    out = {}
    for speech, wave in waves.items():
        wav, m4a = d / f"{speech}.wav", d / f"{speech}.m4a"
        sf.write(str(wav), wave, SR, subtype="PCM_16")
        subprocess.run(
            [
                "ffmpeg",
                "-nostdin",
                "-v",
                "error",
                "-y",
                "-i",
                str(wav),
                "-c:a",
                "aac",
                "-b:a",
                "64k",
                str(m4a),
            ],
            check=True,
        )
        out[speech] = (read_audio(wav)[0], m4a)
    return out


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def _release(root: Path, originals, segments=SEGMENTS, speakers=SPEAKERS) -> EuroparlSplit:
    audios = root / "en" / "audios"
    audios.mkdir(parents=True)
    for _, m4a in originals.values():
        shutil.copy(m4a, audios / m4a.name)
    folder = root / "en" / "it" / "test"
    folder.mkdir(parents=True)
    _write(folder / "segments.lst", [f"{s} {a:.2f} {b:.2f}" for s, a, b, _, _ in segments])
    _write(folder / "segments.en", [en for *_, en, _ in segments])
    _write(folder / "segments.it", [it for *_, it in segments])
    speeches = list(dict.fromkeys(s for s, *_ in segments))
    _write(folder / "speeches.lst", speeches)
    if speakers is not None:
        _write(folder / "speakers.lst", speakers)
    return EuroparlSplit(root, "en", "it", "test")


def _run(split: EuroparlSplit, out: Path, policy: UtterancePolicy | None = None):
    return import_europarl_st(
        split,
        out / "data" / "test.tsv",
        out / "data" / "audio" / "test",
        policy or UtterancePolicy(),
        out / "data" / "test.skipped.tsv",
        progress=False,
    )


def _best_correlation(a: np.ndarray, b: np.ndarray, max_lag: int = 32) -> float:
    """Highest Pearson correlation of a with b shifted by up to max_lag samples."""
    best = -1.0
    n = min(len(a), len(b)) - 2 * max_lag
    for lag in range(-max_lag, max_lag + 1):
        x = a[max_lag : max_lag + n]
        y = b[max_lag + lag : max_lag + lag + n]
        best = max(best, float(np.corrcoef(x, y)[0, 1]))
    return best


def test_import_writes_manifest_and_matching_cuts(tmp_path, originals):
    split = _release(tmp_path / "release", originals)
    n, skips = _run(split, tmp_path)
    assert n == 4 and skips.skips == []
    manifest = tmp_path / "data" / "test.tsv"
    rows = read_manifest(manifest)
    assert [r["id"] for r in rows] == [f"{SPEECH_A}_0", f"{SPEECH_A}_1", f"{SPEECH_B}_0", f"{SPEECH_A}_2"]
    assert [r["src_text"] for r in rows] == [s[3] for s in SEGMENTS]
    assert [r["tgt_text"] for r in rows] == [s[4] for s in SEGMENTS]
    assert [r["speaker"] for r in rows] == SPEAKERS
    assert {(r["src_lang"], r["tgt_lang"]) for r in rows} == {("en", "it")}
    assert "word_times" not in rows[0]
    assert read_skipped(tmp_path / "data" / "test.skipped.tsv") == []

    for row, (speech, start, end, _, _) in zip(rows, SEGMENTS):
        assert row["audio"] == f"audio/test/{row['id']}.wav"  # relative to the manifest's folder
        wav = resolve_audio_path(row["audio"], manifest)
        info = sf.info(str(wav))
        assert (info.samplerate, info.channels, info.subtype) == (SR, 1, "PCM_16")
        expected = (end - start) * SR
        assert abs(info.frames - expected) <= 1
        assert int(row["n_frames"]) == int(1 + ((info.frames / SR) * 1000 - 25) / 10)

        cut = read_audio(wav)[0]
        wave = originals[speech][0]
        i0 = round(start * SR)
        assert _best_correlation(cut, wave[i0 : i0 + len(cut)]) > 0.9
        # ...and a slice 0.1 s off does not match: the check is meaningful.
        off = i0 + 1600 if i0 + 1600 + len(cut) <= len(wave) else i0 - 1600
        assert _best_correlation(cut, wave[off : off + len(cut)]) < 0.5


def test_speakers_per_speech_and_missing(tmp_path, originals):
    split = _release(tmp_path / "r1", originals, speakers=["alice", "bob"])  # one per speech
    _run(split, tmp_path / "o1")
    rows = read_manifest(tmp_path / "o1" / "data" / "test.tsv")
    assert [r["speaker"] for r in rows] == ["alice", "alice", "bob", "alice"]

    split = _release(tmp_path / "r2", originals, speakers=None)
    _run(split, tmp_path / "o2")
    rows = read_manifest(tmp_path / "o2" / "data" / "test.tsv")
    assert [r["speaker"] for r in rows] == [SPEECH_A, SPEECH_A, SPEECH_B, SPEECH_A]

    split = _release(tmp_path / "r3", originals, speakers=["x", "y", "z"])  # matches nothing
    _run(split, tmp_path / "o3")
    rows = read_manifest(tmp_path / "o3" / "data" / "test.tsv")
    assert [r["speaker"] for r in rows] == [SPEECH_A, SPEECH_A, SPEECH_B, SPEECH_A]


def test_line_count_mismatch(tmp_path, originals):
    split = _release(tmp_path / "release", originals)
    _write(split.folder / "segments.it", [s[4] for s in SEGMENTS[:-1]])
    with pytest.raises(DataError) as err:
        _run(split, tmp_path)
    msg = str(err.value)
    assert "segments.it" in msg and "segments.lst" in msg and "3" in msg and "4" in msg


def test_malformed_segments_line(tmp_path, originals):
    for i, bad in enumerate((f"{SPEECH_A} 1.0", f"{SPEECH_A} 1.0 abc", f"{SPEECH_A} -1.0 1.5", "")):
        root = tmp_path / f"r{i}"
        split = _release(root, originals)
        lines = (split.folder / "segments.lst").read_text().splitlines()
        lines[2] = bad
        _write(split.folder / "segments.lst", lines)
        with pytest.raises(DataError, match=r"segments\.lst:3"):
            _run(split, root)


def test_zero_and_negative_length_segments_are_skipped(tmp_path, originals):
    """start == end and end < start are counted skips naming segments.lst:line (errors under 'error')."""
    segments = [
        *SEGMENTS,
        (SPEECH_B, 1.50, 1.50, "Nothing.", "Niente."),
        (SPEECH_A, 2.90, 2.70, "Back.", "Indietro."),
    ]
    split = _release(tmp_path / "release", originals, segments=segments, speakers=None)
    n, skips = _run(split, tmp_path)
    assert n == 4
    assert [(s.id, s.reason, s.source.rsplit("/", 1)[-1]) for s in skips.skips] == [
        (f"{SPEECH_A}_3", "negative_segment", "segments.lst:6"),
        (f"{SPEECH_B}_1", "empty_segment", "segments.lst:5"),
    ]
    written = read_skipped(tmp_path / "data" / "test.skipped.tsv")
    assert sorted(s.reason for s in written) == ["empty_segment", "negative_segment"]
    assert [r["id"] for r in read_manifest(tmp_path / "data" / "test.tsv")] == [
        f"{SPEECH_A}_0", f"{SPEECH_A}_1", f"{SPEECH_B}_0", f"{SPEECH_A}_2",
    ]  # fmt: skip
    with pytest.raises(DataError, match=r"segments\.lst:6.*negative_segment"):
        _run(split, tmp_path / "strict", UtterancePolicy(on_bad="error"))


def test_trailing_blank_lines_are_ignored(tmp_path, originals):
    """Blank lines at the end of segments.{lst,en,it} (also with CRLF) do not break the alignment."""
    split = _release(tmp_path / "release", originals)
    for name in ("segments.lst", "segments.en"):
        path = split.folder / name
        path.write_text(path.read_text() + "\n\n", encoding="utf-8")
    path = split.folder / "segments.it"
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n") + b"  \r\n")
    n, skips = _run(split, tmp_path)
    assert n == len(SEGMENTS) and not skips.skips
    assert [r["tgt_text"] for r in read_manifest(tmp_path / "data" / "test.tsv")] == [s[4] for s in SEGMENTS]


def test_empty_last_transcript_is_a_skip_not_a_trailing_line(tmp_path, originals):
    """An empty transcript on the last aligned line is kept as a line (and skipped as empty_text)."""
    split = _release(tmp_path / "release", originals)
    _write(split.folder / "segments.en", [s[3] for s in SEGMENTS[:-1]] + [""])
    n, skips = _run(split, tmp_path)
    assert n == len(SEGMENTS) - 1
    assert [(s.id, s.reason) for s in skips.skips] == [(f"{SPEECH_A}_2", "empty_text")]


def test_blank_line_inside_segments_lst_is_an_error(tmp_path, originals):
    split = _release(tmp_path / "release", originals)
    lines = (split.folder / "segments.lst").read_text().splitlines()
    _write(split.folder / "segments.lst", lines[:2] + [""] + lines[2:] + ["", ""])
    with pytest.raises(DataError, match=r"segments\.lst:3: expected"):
        _run(split, tmp_path)


def test_missing_files_and_ffmpeg(tmp_path, originals):
    split = _release(tmp_path / "release", originals)
    with pytest.raises(DataError, match="not found"):
        _run(EuroparlSplit(split.root, "en", "it", "dev"), tmp_path)
    (split.folder / "segments.en").unlink()
    with pytest.raises(DataError, match=r"segments\.en"):
        _run(split, tmp_path)
    split = _release(tmp_path / "release2", originals)
    with pytest.raises(DataError, match="Debian package ffmpeg"):
        import_europarl_st(
            split,
            tmp_path / "m.tsv",
            tmp_path / "a",
            UtterancePolicy(),
            tmp_path / "s.tsv",
            ffmpeg="/nonexistent/ffmpeg",
            progress=False,
        )


def test_missing_m4a_is_skipped(tmp_path, originals):
    split = _release(tmp_path / "release", originals)
    (split.root / "en" / "audios" / f"{SPEECH_A}.m4a").unlink()
    n, skips = _run(split, tmp_path)
    assert n == 1
    assert skips.counts() == {"missing_audio": 3}
    rows = read_manifest(tmp_path / "data" / "test.tsv")
    assert [r["id"] for r in rows] == [f"{SPEECH_B}_0"]
    written = read_skipped(tmp_path / "data" / "test.skipped.tsv")
    assert [(s.id, s.reason) for s in written] == [(f"{SPEECH_A}_{k}", "missing_audio") for k in range(3)]
    assert [s.source.rsplit("/", 1)[-1] for s in written] == [
        "segments.lst:1",
        "segments.lst:2",
        "segments.lst:4",
    ]

    with pytest.raises(DataError, match="missing_audio"):
        _run(split, tmp_path / "strict", UtterancePolicy(on_bad="error"))


def test_empty_text_and_too_long_are_skipped(tmp_path, originals):
    split = _release(tmp_path / "release", originals)
    lines = [s[4] for s in SEGMENTS]
    lines[3] = "   "
    _write(split.folder / "segments.it", lines)
    n, skips = _run(split, tmp_path, UtterancePolicy(max_duration_s=1.0))
    # A_1 (1.5 s) and B_0 (1.8 s) are too long; A_2 has an empty translation.
    assert n == 1
    assert sorted((s.id, s.reason) for s in skips.skips) == [
        (f"{SPEECH_A}_1", "too_long"),
        (f"{SPEECH_A}_2", "empty_text"),
        (f"{SPEECH_B}_0", "too_long"),
    ]
    assert [r["id"] for r in read_manifest(tmp_path / "data" / "test.tsv")] == [f"{SPEECH_A}_0"]
    assert len(read_skipped(tmp_path / "data" / "test.skipped.tsv")) == 3


def test_out_of_range_and_unreadable_audio(tmp_path, originals):
    segments = SEGMENTS + [
        (SPEECH_B, 2.0, 2.9, "Too far.", "Troppo lontano."),  # B lasts 2.5 s
        (SPEECH_B, 2.0, 2.55, "Nearly.", "Quasi."),
    ]  # within 0.1 s
    split = _release(tmp_path / "release", originals, segments=segments, speakers=None)
    n, skips = _run(split, tmp_path)
    assert [(s.id, s.reason) for s in skips.skips] == [(f"{SPEECH_B}_1", "out_of_range")]
    assert n == 5

    (split.root / "en" / "audios" / f"{SPEECH_A}.m4a").write_bytes(b"not an m4a file at all")
    n, skips = _run(split, tmp_path / "again")
    assert skips.counts() == {"unreadable_audio": 3, "out_of_range": 1}
    assert all(s.detail for s in skips.skips)
    assert n == 2
