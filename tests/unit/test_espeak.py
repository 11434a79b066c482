"""Tests for caspes.espeak: libespeak-ng synthesis with ground-truth word times."""

from __future__ import annotations

import hashlib
import itertools
import json
import pickle
import shutil
import struct
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from caspes.data.synthetic.espeak import (
    NATIVE_SAMPLE_RATE,
    EspeakSynthesizer,
    Synthesis,
    SynthesisError,
    Voice,
)

try:
    _SYNTH = EspeakSynthesizer()
except SynthesisError as exc:  # pragma: no cover - depends on the machine
    pytest.skip(f"libespeak-ng cannot be loaded: {exc}", allow_module_level=True)

EN_TEXT = "the quick brown fox jumps over the lazy dog"
IT_TEXT = "il gatto è nero perché dorme sul divano"
SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(scope="module")
def synth() -> EspeakSynthesizer:
    return _SYNTH


def _cli_samples(tmp_path: Path, voice: Voice, text: str) -> np.ndarray:
    """int16 samples written by the espeak-ng CLI for ``text``."""
    out = tmp_path / "cli.wav"
    subprocess.run(
        [
            "espeak-ng",
            "-v",
            voice.name,
            "-s",
            str(voice.rate),
            "-p",
            str(voice.pitch),
            "-g",
            str(voice.word_gap),
            "-w",
            str(out),
            text,
        ],
        check=True,
        capture_output=True,
    )
    with wave.open(str(out)) as wav:
        assert wav.getframerate() == NATIVE_SAMPLE_RATE
        assert wav.getnchannels() == 1 and wav.getsampwidth() == 2
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")


def _frame_rms(audio: np.ndarray, sample_rate: int, frame_s: float = 0.005) -> np.ndarray:
    hop = int(frame_s * sample_rate)
    n = len(audio) // hop
    frames = audio[: n * hop].astype(np.float64).reshape(n, hop)
    return np.sqrt((frames**2).mean(axis=1))


def _check_invariants(result: Synthesis, text: str) -> None:
    assert [w.word for w in result.words] == text.split()
    duration = len(result.audio) / result.sample_rate
    for word, nxt in zip(result.words, result.words[1:] + (None,), strict=True):
        assert 0.0 <= word.start < word.end <= duration + 1e-9
        if nxt is not None:
            assert word.end <= nxt.start


# 1. bit-identical to the CLI --------------------------------------------------------


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng CLI not installed")
@pytest.mark.parametrize(
    ("voice", "text"),
    [
        (Voice("en-us"), EN_TEXT),
        (Voice("it", rate=150, pitch=40), IT_TEXT),
        (Voice("en-gb", rate=200, pitch=60, word_gap=5), "in the house of a friend"),
        (Voice("en-us", word_gap=20), EN_TEXT),
    ],
    ids=lambda x: x.tag if isinstance(x, Voice) else None,
)
def test_native_audio_is_bit_identical_to_cli(
    synth: EspeakSynthesizer, tmp_path: Path, voice: Voice, text: str
) -> None:
    expected = _cli_samples(tmp_path, voice, text)
    pcm = synth.synthesize_pcm(text, voice)
    assert pcm.sample_rate == NATIVE_SAMPLE_RATE
    assert pcm.samples.dtype == np.int16
    np.testing.assert_array_equal(pcm.samples, expected)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng CLI not installed")
def test_history_does_not_change_audio(synth: EspeakSynthesizer, tmp_path: Path) -> None:
    # libespeak-ng keeps state between utterances (e.g. pitch-flutter phase) and
    # queues an event per voice selection; neither may leak into later calls.
    voice = Voice("it")
    expected = _cli_samples(tmp_path, voice, IT_TEXT)
    for other in ("en-us", "it", "en-gb", "en-us", "it") * 4:
        synth.synthesize_pcm(EN_TEXT if other != "it" else IT_TEXT, Voice(other))
        np.testing.assert_array_equal(synth.synthesize_pcm(IT_TEXT, voice).samples, expected)


def test_resampled_audio(synth: EspeakSynthesizer) -> None:
    from scipy.signal import resample_poly

    voice = Voice("en-us")
    pcm = synth.synthesize_pcm(EN_TEXT, voice)
    result = synth.synthesize(EN_TEXT, voice)  # 16 kHz default
    assert result.sample_rate == 16000
    assert result.audio.dtype == np.float32 and result.audio.ndim == 1
    assert np.abs(result.audio).max() <= 1.0
    expected = resample_poly(pcm.samples.astype(np.float64) / 32768.0, 320, 441)
    np.testing.assert_array_equal(result.audio, np.clip(expected, -1, 1).astype(np.float32))
    assert result.words == pcm.words
    native = synth.synthesize(EN_TEXT, voice, sample_rate=NATIVE_SAMPLE_RATE)
    np.testing.assert_array_equal(native.audio, pcm.samples.astype(np.float32) / 32768)


# 2. word times against the signal energy ------------------------------------------------


@pytest.mark.parametrize(
    ("voice", "text"),
    [
        (Voice("en-us", word_gap=20), EN_TEXT),
        (Voice("en-gb", rate=220, pitch=30, word_gap=20), "she sells sea shells at the market"),
        (Voice("it", word_gap=20), IT_TEXT),
    ],
    ids=["en-us", "en-gb", "it"],
)
def test_word_times_match_energy(synth: EspeakSynthesizer, voice: Voice, text: str) -> None:
    result = synth.synthesize(text, voice)
    _check_invariants(result, text)
    sr = result.sample_rate
    frame = 0.005
    rms = _frame_rms(result.audio, sr, frame)
    threshold = 0.02 * rms.max()
    inside = np.zeros(len(rms), dtype=bool)
    gaps = np.zeros(len(rms), dtype=bool)
    words = result.words
    for word in words:
        inside[int(word.start / frame) : int(np.ceil(word.end / frame))] = True
    # Gaps between separated words (espeak speaks "over the" as one unit, no gap),
    # trimmed by a frame on both sides.
    for prev, nxt in itertools.pairwise(words):
        if nxt.start - prev.end > 0.05:
            gaps[int(np.ceil(prev.end / frame)) + 1 : int(nxt.start / frame) - 1] = True
    assert gaps.sum() * frame > 0.1 * (len(words) - 1)
    assert rms[inside].mean() > 10 * rms[gaps].mean()
    assert not (rms[gaps] > threshold).any()
    for word in words:
        first, last = int(word.start / frame), int(np.ceil(word.end / frame))
        loud = np.flatnonzero(rms[first:last] > threshold)
        assert len(loud), word
        onset = (first + loud[0]) * frame
        # The WORD event is at or before the audible onset: a word-initial stop
        # after a pause starts with up to ~50 ms of (silent) closure.
        assert -frame <= onset - word.start <= 0.060, (word, onset)
        offset = (first + loud[-1] + 1) * frame
        assert -frame <= word.end - offset <= 0.030, (word, offset)


def test_merged_words_are_split(synth: EspeakSynthesizer) -> None:
    # espeak speaks "in the" / "of a" as one dictionary entry with one WORD event.
    text = "in the house of a friend"
    result = synth.synthesize(text, Voice("en-us"))
    _check_invariants(result, text)
    for word in result.words:
        assert word.end - word.start >= 0.02, word
    with pytest.raises(SynthesisError, match="'in the' spoken as one word"):
        synth.synthesize(text, Voice("en-us"), split_merged=False)


# 3. determinism ---------------------------------------------------------------------


def test_deterministic_and_voice_dependent(synth: EspeakSynthesizer) -> None:
    voice = Voice("en-us", rate=160, pitch=45)
    first = synth.synthesize(EN_TEXT, voice)
    second = synth.synthesize(EN_TEXT, voice)
    np.testing.assert_array_equal(first.audio, second.audio)
    assert first.words == second.words
    for other in (
        Voice("en-gb"),
        Voice("en-us", rate=200),
        Voice("en-us", pitch=70),
        Voice("en-us", pitch_range=80),
        Voice("en-us", word_gap=5),
    ):
        audio = synth.synthesize(EN_TEXT, other).audio
        assert len(audio) != len(first.audio) or not np.array_equal(audio, first.audio), other


def test_deterministic_across_processes(synth: EspeakSynthesizer) -> None:
    code = (
        "import sys, hashlib; sys.path.insert(0, sys.argv[1]);"
        "from caspes.data.synthetic.espeak import EspeakSynthesizer, Voice;"
        "r = EspeakSynthesizer().synthesize_pcm(sys.argv[2], Voice('it'));"
        "print(hashlib.sha256(r.samples.tobytes()).hexdigest(), repr([(w.start, w.end) for w in r.words]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(SRC), IT_TEXT], check=True, capture_output=True, text=True
    ).stdout.split(" ", 1)
    local = synth.synthesize_pcm(IT_TEXT, Voice("it"))
    assert out[0] == hashlib.sha256(local.samples.tobytes()).hexdigest()
    assert out[1].strip() == repr([(w.start, w.end) for w in local.words])


def test_pickled_instance_works(synth: EspeakSynthesizer) -> None:
    clone = pickle.loads(pickle.dumps(synth))
    try:
        assert clone.synthesize("ciao", Voice("it")).words == synth.synthesize("ciao", Voice("it")).words
    finally:
        clone.close()


# 4. errors --------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_text_raises(synth: EspeakSynthesizer, text: str) -> None:
    with pytest.raises(SynthesisError, match="empty text") as info:
        synth.synthesize(text, Voice("en-us"))
    assert repr(text) in str(info.value) and "en-us_r175" in str(info.value)


def test_word_count_mismatch_raises(synth: EspeakSynthesizer) -> None:
    # "," is spoken as a pause, not a word: espeak reports 2 words for 3 tokens.
    text = "hello , world"
    with pytest.raises(SynthesisError) as info:
        synth.synthesize(text, Voice("en-us"))
    assert repr(text) in str(info.value) and "en-us_r175_p50_g50_w0" in str(info.value)
    with pytest.raises(SynthesisError, match="2 words for 3 tokens"):
        synth.synthesize("in the house", Voice("en-us"), split_merged=False)


def test_unknown_voice_raises(synth: EspeakSynthesizer) -> None:
    with pytest.raises(SynthesisError, match="unknown espeak voice 'xx-nope'"):
        synth.synthesize("hello", Voice("xx-nope"))
    assert synth.synthesize("hello", Voice("en-us")).words[0].word == "hello"


def test_missing_library_raises(tmp_path: Path) -> None:
    with pytest.raises(SynthesisError, match="install the Debian package espeak-ng"):
        EspeakSynthesizer(library=str(tmp_path / "libespeak-ng.so.1"))
    with pytest.raises(SynthesisError, match="espeak-ng-data"):
        EspeakSynthesizer(data_path=str(tmp_path))


def test_voice_validation_and_tag() -> None:
    assert Voice("en-us").tag == "en-us_r175_p50_g50_w0"
    assert Voice("it", rate=150, pitch=40, pitch_range=60, word_gap=2).tag == "it_r150_p40_g60_w2"
    for bad in (dict(rate=10), dict(pitch=101), dict(pitch_range=-1), dict(word_gap=-1)):
        with pytest.raises(ValueError):
            Voice("en-us", **bad)
    with pytest.raises(ValueError):
        Voice("en us")


def test_available_voices(synth: EspeakSynthesizer) -> None:
    voices = synth.available_voices()
    assert {"en-us", "en-gb", "it"} <= set(voices)


# 5. accented Italian ----------------------------------------------------------------


def test_accented_italian_alignment(synth: EspeakSynthesizer) -> None:
    text = "il gatto è nero perché dorme"
    result = synth.synthesize(text, Voice("it", word_gap=20))
    _check_invariants(result, text)
    sr = result.sample_rate
    # Separated by 200 ms pauses: every span holds sound, every pause is silent, so a
    # character/byte mix-up (which would shift words after "è") cannot go unnoticed.
    words = result.words
    for word in words:
        span = result.audio[int(word.start * sr) : int(word.end * sr)]
        assert np.abs(span).max() > 0.05, word
    for prev, nxt in itertools.pairwise(words):
        assert nxt.start - prev.end > 0.15, (prev, nxt)
        gap = result.audio[int(prev.end * sr) + 80 : int(nxt.start * sr) - 80]
        assert np.abs(gap).max() < 0.01, (prev, nxt)
    durations = {w.word: w.end - w.start for w in words}
    assert durations["perché"] > durations["è"]
    # Continuous speech: same tokens, contiguous-or-ordered spans.
    _check_invariants(synth.synthesize(text, Voice("it")), text)


def test_helper_module_imports_only_the_standard_library() -> None:
    """The helper runs as ``python -I -S espeak_helper.py``: no package, no numpy."""
    import ast

    from caspes.data.synthetic import espeak_helper

    tree = ast.parse(Path(espeak_helper.__file__).read_text(encoding="utf-8"))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0 and node.module is not None, ast.dump(node)
            roots.add(node.module.split(".")[0])
    assert roots and roots <= set(sys.stdlib_module_names), roots - set(sys.stdlib_module_names)


def test_helper_script_starts_in_isolated_mode() -> None:
    """The helper file, run as the synthesizer runs it, initialises the library and
    exits when its input closes."""
    from caspes.data.synthetic import espeak_helper

    library = espeak_helper.find_library(None)
    done = subprocess.run(
        [sys.executable, "-I", "-S", espeak_helper.__file__, "--zygote", library, ""],
        input=b"",
        capture_output=True,
        timeout=60,
        check=True,
    )
    head_len, payload_len = struct.unpack("<IQ", done.stdout[:12])
    assert payload_len == 0
    assert json.loads(done.stdout[12 : 12 + head_len]) == {"ok": True, "sample_rate": NATIVE_SAMPLE_RATE}
