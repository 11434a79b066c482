"""Speech synthesis with ground-truth word times through libespeak-ng (ctypes).

This module is the public API: :class:`Voice`, :class:`EspeakSynthesizer` and its
results, resampling, and the alignment of espeak's events to the tokens of the text.
The process that runs the library is in :mod:`.espeak_helper`.

Why libespeak-ng through ctypes
    Exact word times need espeak's own events.  The C library reports, next to the
    audio, one ``espeakEVENT_WORD`` per word it speaks and (when initialised with
    ``espeakINITIALIZE_PHONEME_EVENTS``) one ``espeakEVENT_PHONEME`` per phoneme, each
    with its sample position in the audio it returns.  The ``espeak-ng`` command line
    tool writes audio but no word times, and Python wrappers do not give these
    positions either (pyttsx3's espeak driver, for instance, reports a word as a
    ``started-word`` callback with its position in the *text*; phonemizer uses the
    library for phonemes only, without audio).  So the few C functions needed are bound
    here with :mod:`ctypes`, which is in the standard library: the helper process that
    runs the library needs no compiled extension and no third-party package, only the
    Debian package ``espeak-ng``.

Fresh state per utterance
    libespeak-ng keeps process-global state that is *not* reset between utterances and
    cannot be reset through its API (e.g. the pitch-flutter phase of the wave
    generator, and one queued event per voice selection): synthesising the same text
    twice in one process gives slightly different samples and lengths, and after a few
    voice switches the first WORD events get dropped.  So every utterance is
    synthesised in a freshly forked process whose library state is exactly the one the
    ``espeak-ng`` CLI starts from (initialised, voice selected, nothing synthesised).
    The native 22050 Hz int16 samples are therefore bit-identical to
    ``espeak-ng -v VOICE -s RATE -p PITCH -g GAP -w out.wav TEXT`` and to every other
    call, in any process (checked also for variants with noise, e.g. ``+f3``).

    Process layout (:mod:`.espeak_helper`): the synthesizer starts one helper
    (``python -I -S`` running ``espeak_helper.py`` as a script; standard library
    only) that initialises the library; per voice it forks a *voice server* that
    selects the voice once (~4 ms); a voice server answers each request in a worker
    forked from it in advance.  The overhead is a few milliseconds per
    utterance (a 10-word sentence took ~5 ms instead of ~3 ms in-process).

Word times (see :meth:`EspeakSynthesizer.synthesize`)
    * **start** -- the sample position of espeak's WORD event for the word.  For a
      word that begins with a stop consonant after a pause this includes the (silent)
      closure, i.e. it can lie up to ~50 ms before the audible burst; otherwise it
      coincides with the first phoneme.
    * **end** -- the start of the first *pause phoneme* (mnemonic beginning with ``_``)
      after the word's last real phoneme, i.e. the sample where espeak stops producing
      the word's sound; if no pause follows before the next word, the next word's
      start (continuous speech); for a last word without a pause, the end of the
      audio.  Hence ``start < end <= next.start``.
    * **merged words** -- espeak speaks some frequent sequences as one dictionary entry
      and then emits a single WORD event for several tokens (English ``in the``, ``of
      a``, ``do not``, ...).  The phonemes of such a group are split between its tokens
      by a small dynamic-programming alignment against each token's pronunciation in
      isolation; later tokens start at their first phoneme.  If the split is not
      convincing, or with ``split_merged=False``, :class:`SynthesisError` is raised:
      misaligned times are never returned silently.

Processes and threads
    Each :class:`EspeakSynthesizer` owns one helper process tree (it ends when the
    synthesizer is closed or its process exits) and serialises its calls with a lock.
    Create one synthesizer per worker process (``multiprocessing`` with ``spawn`` or
    ``fork`` both work; an instance inherited through ``fork`` or unpickled in another
    process starts its own helper there).  Do not share one instance across threads
    expecting parallelism: calls on one instance run one at a time.
"""

from __future__ import annotations

import functools
import os
import threading
from dataclasses import dataclass
from math import gcd
from typing import Any

import numpy as np
from scipy.signal import firwin, resample_poly

from caspes.data.synthetic.espeak_helper import (
    EV_PHONEME,
    EV_WORD,
    TOKEN,
    HelperProcess,
    SynthesisError,
    find_library,
    is_pause,
    normalise_data_path,
    token_index,
)

__all__ = [
    "NATIVE_SAMPLE_RATE",
    "SynthesisError",
    "Voice",
    "WordTiming",
    "PcmSynthesis",
    "Synthesis",
    "EspeakSynthesizer",
]


#: Sample rate of libespeak-ng's own output (int16 mono).
NATIVE_SAMPLE_RATE = 22050


@dataclass(frozen=True)
class Voice:
    """An espeak voice plus speech parameters; together with the text it fully
    determines the output.

    Attributes:
        name: espeak voice name as accepted by ``espeak-ng -v`` (``"en-us"``,
            ``"en-gb"``, ``"it"``, ``"en-us+f3"``, ...).
        rate: speaking rate in words per minute (``espeakRATE``, 80-450).
        pitch: base pitch, 0-100 (``espeakPITCH``).
        pitch_range: pitch range, 0-100 (``espeakRANGE``; 0 = monotone).
        word_gap: extra pause between words in units of 10 ms (``espeakWORDGAP``).
    """

    name: str
    rate: int = 175
    pitch: int = 50
    pitch_range: int = 50
    word_gap: int = 0

    def __post_init__(self) -> None:
        if not self.name or any(c.isspace() for c in self.name):
            raise ValueError(f"invalid espeak voice name {self.name!r}")
        if not 80 <= self.rate <= 450:
            raise ValueError(f"rate must be in 80..450 words/minute, got {self.rate}")
        if not 0 <= self.pitch <= 100:
            raise ValueError(f"pitch must be in 0..100, got {self.pitch}")
        if not 0 <= self.pitch_range <= 100:
            raise ValueError(f"pitch_range must be in 0..100, got {self.pitch_range}")
        if not 0 <= self.word_gap <= 1000:
            raise ValueError(f"word_gap must be in 0..1000, got {self.word_gap}")

    @property
    def tag(self) -> str:
        """Short stable identifier for manifests, e.g. ``"en-us_r175_p50_g50_w0"``."""
        return f"{self.name}_r{self.rate}_p{self.pitch}_g{self.pitch_range}_w{self.word_gap}"


@dataclass(frozen=True)
class WordTiming:
    """One input token with its time span in the synthesised audio (seconds)."""

    word: str
    start: float
    end: float


@dataclass(frozen=True)
class PcmSynthesis:
    """Native libespeak-ng output: int16 mono samples at :data:`NATIVE_SAMPLE_RATE`.

    ``samples`` equal the data chunk of ``espeak-ng -w`` for the same text and voice;
    ``word_samples`` gives each word's ``(start, end)`` as sample indices (end
    exclusive), ``words`` the same in seconds.
    """

    samples: np.ndarray
    sample_rate: int
    words: tuple[WordTiming, ...]
    word_samples: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Synthesis:
    """Synthesised utterance.

    Attributes:
        audio: float32 mono samples in [-1, 1], shape ``(n_samples,)``.
        sample_rate: sample rate of ``audio`` in Hz.
        words: one :class:`WordTiming` per whitespace-separated token of the text.
    """

    audio: np.ndarray
    sample_rate: int
    words: tuple[WordTiming, ...]

    @property
    def duration(self) -> float:
        """Length of ``audio`` in seconds."""
        return len(self.audio) / self.sample_rate


class EspeakSynthesizer:
    """Text-to-speech with ground-truth word times through libespeak-ng.

    Args:
        library: path or name of ``libespeak-ng.so.1``; default: found with
            :func:`ctypes.util.find_library`, else the Debian location.
        data_path: directory containing ``espeak-ng-data`` (or that directory itself);
            default: the library's compiled-in location.

    The constructor starts the helper process and so reports a missing library or
    data immediately.  Calls on one instance are serialised by a lock.  The instance
    is picklable and survives ``fork``: in a new process it starts its own helper on
    first use.  Use one instance per worker process; see the module docstring.

    Raises:
        SynthesisError: libespeak-ng or its data cannot be found (the message says to
            install the Debian package ``espeak-ng``).
    """

    def __init__(self, library: str | None = None, data_path: str | None = None) -> None:
        self._library = find_library(library)
        self._data_path = normalise_data_path(data_path)
        self._lock = threading.Lock()
        self._helper: HelperProcess | None = None
        with self._lock:
            self._get_helper()

    def __getstate__(self) -> dict[str, Any]:
        return {"library": self._library, "data_path": self._data_path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._library = state["library"]
        self._data_path = state["data_path"]
        self._lock = threading.Lock()
        self._helper = None

    def __enter__(self) -> EspeakSynthesizer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the helper process (a later call starts a new one)."""
        with self._lock:
            if self._helper is not None:
                self._helper.close()
                self._helper = None

    def _get_helper(self) -> HelperProcess:
        helper = self._helper
        if helper is None or helper.pid != os.getpid() or not helper.alive:
            if helper is not None and helper.pid == os.getpid():
                helper.close()
            helper = self._helper = HelperProcess(self._library, self._data_path)
        return helper

    def _request(self, header: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        with self._lock:
            return self._get_helper().request(header)

    @property
    def native_sample_rate(self) -> int:
        """Sample rate of libespeak-ng's own output (22050 Hz)."""
        return NATIVE_SAMPLE_RATE

    def available_voices(self) -> list[str]:
        """Sorted language names usable as :attr:`Voice.name`, e.g. ``"en-us"``, ``"it"``.

        (A few entries of the installed data may still be unusable, e.g. voices
        that the ``espeak-ng`` CLI rejects as well.)
        """
        header, _ = self._request({"op": "voices"})
        if "error" in header:
            raise SynthesisError(f"cannot list espeak voices: {header['error']}")
        return list(header["voices"])

    def synthesize(
        self,
        text: str,
        voice: Voice,
        sample_rate: int = 16000,
        *,
        split_merged: bool = True,
    ) -> Synthesis:
        """Synthesise ``text``; return float32 audio and one time span per token.

        ``text`` should be words separated by whitespace without punctuation (UTF-8
        letters such as ``"è"`` are fine; it is passed with ``espeakCHARS_UTF8`` and
        espeak's character positions are mapped to the tokens).  The result has
        exactly one :class:`WordTiming` per whitespace-separated token, in order, whose
        ``word`` is that token.  Times are seconds from the start of ``audio``:

        * ``start``: espeak's WORD event (for tokens espeak speaks together with the
          previous one as one dictionary entry, e.g. "the" in "in the": the token's
          first phoneme event);
        * ``end``: the first pause phoneme after the word's last phoneme (where its
          sound ends), else the next word's start, else the end of the audio.

        ``start < end <= next.start`` always holds.  The audio is the native 22050 Hz
        output (bit-identical to ``espeak-ng -w``) scaled to [-1, 1] (int16 / 32768)
        and, unless ``sample_rate`` is 22050, resampled with
        :func:`scipy.signal.resample_poly` (zero phase, so the times stay valid).  The
        same ``text`` and ``voice`` give bit-identical results in every call and
        process.

        Args:
            text: the utterance.
            voice: voice and speech parameters.
            sample_rate: sample rate of the returned audio in Hz.
            split_merged: split token groups that espeak reports as one word (see the
                module docstring); if False such groups raise :class:`SynthesisError`.

        Raises:
            SynthesisError: empty text, unknown voice, or espeak's words cannot be
                matched to the tokens one-to-one (the message names text and voice).
        """
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        pcm = self.synthesize_pcm(text, voice, split_merged=split_merged)
        audio = _to_float_audio(pcm.samples, pcm.sample_rate, sample_rate)
        return Synthesis(audio=audio, sample_rate=sample_rate, words=pcm.words)

    def synthesize_pcm(self, text: str, voice: Voice, *, split_merged: bool = True) -> PcmSynthesis:
        """Like :meth:`synthesize` but return the native int16 samples at 22050 Hz.

        The samples are bit-identical to the data chunk written by
        ``espeak-ng -v NAME -s RATE -p PITCH -g WORD_GAP -w out.wav TEXT`` (the CLI
        has no option for ``pitch_range``, so only with the default 50).
        """
        tokens = [(m.group(), m.start(), m.end()) for m in TOKEN.finditer(text)]
        if not tokens:
            raise SynthesisError(f"empty text {text!r} (voice {voice.tag})")
        header, payload = self._request(
            {
                "op": "synth",
                "text": text,
                "voice": {
                    "name": voice.name,
                    "rate": voice.rate,
                    "pitch": voice.pitch,
                    "pitch_range": voice.pitch_range,
                    "word_gap": voice.word_gap,
                },
            }
        )
        if "error" in header:
            raise SynthesisError(f"{header['error']} (text {text!r}, voice {voice.tag})")
        samples = np.frombuffer(payload, dtype="<i2").astype(np.int16)
        sr = int(header["sample_rate"])
        spans = _word_spans(
            text,
            voice,
            tokens,
            [tuple(e) for e in header["events"]],
            header["isolated"],
            len(samples),
            split_merged,
        )
        words = tuple(
            WordTiming(word=token, start=s / sr, end=e / sr)
            for (token, _, _), (s, e) in zip(tokens, spans, strict=True)
        )
        return PcmSynthesis(samples=samples, sample_rate=sr, words=words, word_samples=tuple(spans))


def _to_float_audio(samples: np.ndarray, rate: int, sample_rate: int) -> np.ndarray:
    """int16 ``samples`` at ``rate`` as float32 in [-1, 1] at ``sample_rate``."""
    if sample_rate == rate:
        return samples.astype(np.float32) / np.float32(32768.0)

    g = gcd(sample_rate, rate)
    up, down = sample_rate // g, rate // g
    resampled = resample_poly(
        samples.astype(np.float64) / 32768.0,
        up,
        down,
        window=_resampling_filter(up, down),
    )
    return np.clip(resampled, -1.0, 1.0).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _resampling_filter(up: int, down: int) -> np.ndarray:
    """The FIR filter :func:`scipy.signal.resample_poly` designs by default (Kaiser
    window, beta 5), computed once per ratio; passing it gives identical output."""

    max_rate = max(up, down)
    taps = firwin(2 * 10 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0))
    taps.flags.writeable = False
    return taps


_VOWEL_START = set("aeiouyAEIOUVY03@&")


def _phoneme_cost(a: str, b: str) -> float:
    """Substitution cost between two espeak phoneme mnemonics."""
    if a == b:
        return 0.0
    strip = "0123456789#-:;!%"
    if a.rstrip(strip) and a.rstrip(strip) == b.rstrip(strip):
        return 0.25  # variants of one phoneme: t / t#, I / I2, @ / @2
    if a[:1] in _VOWEL_START and b[:1] in _VOWEL_START:
        return 0.5  # vowel reduction in connected speech: eI -> @
    return 1.0


def _edit_distance(seq: list[str], ref: list[str]) -> float:
    row = [float(j) for j in range(len(ref) + 1)]
    for i, a in enumerate(seq, 1):
        diagonal, row[0] = row[0], float(i)
        for j, b in enumerate(ref, 1):
            value = min(row[j] + 1.0, row[j - 1] + 1.0, diagonal + _phoneme_cost(a, b))
            diagonal, row[j] = row[j], value
    return row[-1]


def _split_phonemes(merged: list[str], references: list[list[str]]) -> tuple[list[int], float]:
    """Cut ``merged`` into ``len(references)`` non-empty consecutive segments.

    Minimises the sum of edit distances between each segment and its reference; on a
    tie earlier tokens keep more phonemes (a linking "r" stays with "for").  Returns
    the segment start indices and the total cost.
    """
    n, length = len(references), len(merged)
    inf = float("inf")
    cost = [[inf] * (length + 1) for _ in range(n + 1)]
    back = [[0] * (length + 1) for _ in range(n + 1)]
    cost[0][0] = 0.0
    for j in range(1, n + 1):
        for end in range(j, length - (n - j) + 1):
            for begin in range(j - 1, end):
                if cost[j - 1][begin] == inf:
                    continue
                c = cost[j - 1][begin] + _edit_distance(merged[begin:end], references[j - 1])
                if c <= cost[j][end]:
                    cost[j][end], back[j][end] = c, begin
    starts = [0] * n
    end = length
    for j in range(n, 0, -1):
        starts[j - 1] = end = back[j][end]
    return starts, cost[n][length]


_Phonemes = list[tuple[str, int]]


def _word_spans(
    text: str,
    voice: Voice,
    tokens: list[tuple[str, int, int]],
    events: list[tuple[Any, ...]],
    isolated: dict[str, list[str]],
    n_samples: int,
    split_merged: bool,
) -> list[tuple[int, int]]:
    """(start, end) sample of every token from espeak's WORD and PHONEME events."""

    def fail(why: str) -> SynthesisError:
        return SynthesisError(f"{why} (text {text!r}, voice {voice.tag})")

    bounds = [(s, e) for _, s, e in tokens]
    # Events arrive in time order; phonemes belong to the preceding WORD event.
    groups: list[tuple[int, int, _Phonemes]] = []  # (token index, sample, phonemes)
    for kind, position, sample, phoneme in events:
        if kind == EV_WORD:
            k = token_index(bounds, position)
            if k is None:
                raise fail(f"espeak word at character {position} matches no token")
            if groups and k == groups[-1][0]:
                continue  # one token spoken as several words: it starts at the first
            if groups and k < groups[-1][0]:
                raise fail("espeak words out of order")
            groups.append((k, sample, []))
        elif kind == EV_PHONEME and groups:
            groups[-1][2].append((phoneme, sample))
    if not groups or groups[0][0] != 0:
        raise fail(
            f"espeak reported {len(groups)} words for {len(tokens)} tokens "
            f"(no word event for the first token {tokens[0][0]!r})"
        )

    per_token: list[tuple[int, _Phonemes]] = []  # (start sample, phonemes + pauses)
    for g, (k, word_sample, phonemes) in enumerate(groups):
        k_next = groups[g + 1][0] if g + 1 < len(groups) else len(tokens)
        if k_next - k == 1:
            per_token.append((word_sample, phonemes))
            continue
        merged = [t for t, _, _ in tokens[k:k_next]]
        if not split_merged:
            raise fail(
                f"espeak reported {len(groups)} words for {len(tokens)} tokens: "
                f"{' '.join(merged)!r} spoken as one word"
            )
        per_token.extend(_split_group(word_sample, phonemes, merged, isolated, fail))

    spans: list[tuple[int, int]] = []
    for k, (start, phonemes) in enumerate(per_token):
        limit = per_token[k + 1][0] if k + 1 < len(per_token) else n_samples
        real = [i for i, (p, _) in enumerate(phonemes) if not is_pause(p)]
        if not real:
            raise fail(f"no phonemes for token {tokens[k][0]!r}")
        end = limit
        for p, s in phonemes[real[-1] + 1 :]:
            if is_pause(p):
                end = min(s, limit)
                break
        if not start < end:
            raise fail(f"empty time span for token {tokens[k][0]!r} ({start}..{end})")
        spans.append((start, end))
    return spans


def _split_group(
    word_sample: int,
    phonemes: _Phonemes,
    merged: list[str],
    isolated: dict[str, list[str]],
    fail: Any,
) -> list[tuple[int, _Phonemes]]:
    """Split the phonemes of one espeak word over the tokens ``merged``."""
    label = " ".join(merged)
    real = [i for i, (p, _) in enumerate(phonemes) if not is_pause(p)]
    references = [isolated.get(t, []) for t in merged]
    if any(not r for r in references) or len(real) < len(merged):
        raise fail(f"cannot split {label!r} spoken as one espeak word: a token has no phonemes")
    names = [phonemes[i][0] for i in real]
    cuts, cost = _split_phonemes(names, references)
    if cost > 0.5 * max(len(real), sum(len(r) for r in references)):
        raise fail(
            f"cannot split {label!r} spoken as one espeak word: phonemes {names} do not match {references}"
        )
    out: list[tuple[int, _Phonemes]] = []
    for j, cut in enumerate(cuts):
        first = 0 if j == 0 else real[cut]
        stop = real[cuts[j + 1]] if j + 1 < len(cuts) else len(phonemes)
        start = word_sample if j == 0 else phonemes[first][1]
        out.append((start, phonemes[first:stop]))
    return out
