"""Speech synthesis with ground-truth word times through libespeak-ng (ctypes).

The ``espeak-ng`` command line tool writes audio but no word times.  The C library
reports, next to the audio, one ``espeakEVENT_WORD`` per word it speaks and (when
initialised with ``espeakINITIALIZE_PHONEME_EVENTS``) one ``espeakEVENT_PHONEME`` per
phoneme, each with its exact sample position.  This module drives the library through
ctypes and turns those events into word start/end times that are exact with respect to
the returned audio.

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

    Process layout: the synthesizer starts one helper (``python -I -S`` running this
    file; stdlib only) that initialises the library; per voice it forks a *voice
    server* that selects the voice once (~4 ms); a voice server answers each request
    in a worker forked from it in advance.  The overhead is a few milliseconds per
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
    synthesizer is closed or its process exits) and serialises its calls with a lock.  Create one synthesizer per worker process (``multiprocessing`` with
    ``spawn`` or ``fork`` both work; an instance inherited through ``fork`` or
    unpickled in another process starts its own helper there).  Do not share one
    instance across threads expecting parallelism: calls on one instance run one at a
    time.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import json
import os
import re
import struct
import subprocess
import sys
import threading
import weakref
from dataclasses import dataclass
from math import gcd
from pathlib import Path
from typing import TYPE_CHECKING, Any

__all__ = [
    "NATIVE_SAMPLE_RATE",
    "SynthesisError",
    "Voice",
    "WordTiming",
    "PcmSynthesis",
    "Synthesis",
    "EspeakSynthesizer",
]

if TYPE_CHECKING:  # numpy is imported lazily: the helper process runs without it
    import numpy as np


#: Sample rate of libespeak-ng's own output (int16 mono).
NATIVE_SAMPLE_RATE = 22050


_DEBIAN_LIBRARY = "/usr/lib/x86_64-linux-gnu/libespeak-ng.so.1"


_INSTALL_HINT = "install the Debian package espeak-ng (apt-get install espeak-ng)"


#: Seconds after which a single utterance is abandoned (the forked child is killed).
_UTTERANCE_TIMEOUT_S = 120


# --- constants from <espeak-ng/speak_lib.h> (API revision 12, espeak-ng 1.51) -------
_AUDIO_OUTPUT_SYNCHRONOUS = 2


_INITIALIZE_PHONEME_EVENTS = 0x0001


_INITIALIZE_DONT_EXIT = 0x8000  # report missing data instead of calling exit()


_POS_CHARACTER = 1


_CHARS_UTF8 = 1


_ENDPAUSE = 0x1000  # the CLI always passes it: pause at the end of the text


_EE_OK = 0


_EV_LIST_TERMINATED = 0


_EV_WORD = 1


_EV_PHONEME = 7


_P_RATE = 1


_P_PITCH = 3


_P_RANGE = 4


_P_WORDGAP = 7


_TOKEN = re.compile(r"\S+")


class SynthesisError(RuntimeError):
    """Synthesis failed or its word times could not be established reliably."""


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


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_exact(fd: int, n: int) -> bytes:
    parts, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError("pipe closed")
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _pack(header: dict[str, Any], payload: bytes = b"") -> bytes:
    head = json.dumps(header, ensure_ascii=True).encode()
    return struct.pack("<IQ", len(head), len(payload)) + head + payload


def _read_message(fd: int) -> tuple[dict[str, Any], bytes]:
    head_len, payload_len = struct.unpack("<IQ", _read_exact(fd, 12))
    header = json.loads(_read_exact(fd, head_len))
    return header, _read_exact(fd, payload_len)


class _EventId(ctypes.Union):
    _fields_ = [
        ("number", ctypes.c_int),
        ("name", ctypes.c_char_p),
        ("string", ctypes.c_char * 8),
    ]


class _Event(ctypes.Structure):
    """``espeak_EVENT``: 40 bytes on x86-64 (offsets 0,4,8,12,16,20,24,32; checked
    against ``offsetof`` with the 1.51 header)."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


class _VoiceSpec(ctypes.Structure):
    """``espeak_VOICE``."""

    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_char_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


def _voice_languages(voice: Any) -> list[str]:
    """Language names of an ``espeak_VOICE*`` (``languages`` holds
    ``<priority byte><name>\\0`` entries, terminated by an empty name)."""
    if not voice:
        return []
    field = ctypes.addressof(voice.contents) + _VoiceSpec.languages.offset
    address = ctypes.c_void_p.from_address(field).value
    out: list[str] = []
    while address:
        entry = ctypes.string_at(address + 1)  # skip the priority byte
        if not entry:
            break
        out.append(entry.decode("utf-8", "replace").lower())
        address += len(entry) + 2
    return out


class _Engine:
    """libespeak-ng loaded and initialised in the helper process."""

    def __init__(self, library: str, data_path: str | None) -> None:
        try:
            lib = ctypes.CDLL(library)
        except OSError as exc:
            raise SynthesisError(
                f"cannot load libespeak-ng from {library!r} ({exc}); {_INSTALL_HINT}"
            ) from exc
        for name, argtypes, restype in (
            ("espeak_Initialize", [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int], ctypes.c_int),
            ("espeak_Info", [ctypes.POINTER(ctypes.c_char_p)], ctypes.c_char_p),
            ("espeak_SetSynthCallback", [_SynthCallback], None),
            ("espeak_SetVoiceByName", [ctypes.c_char_p], ctypes.c_int),
            ("espeak_SetVoiceByProperties", [ctypes.POINTER(_VoiceSpec)], ctypes.c_int),
            ("espeak_GetCurrentVoice", [], ctypes.POINTER(_VoiceSpec)),
            ("espeak_ListVoices", [ctypes.POINTER(_VoiceSpec)], ctypes.POINTER(ctypes.POINTER(_VoiceSpec))),
            ("espeak_SetParameter", [ctypes.c_int, ctypes.c_int, ctypes.c_int], ctypes.c_int),
            (
                "espeak_Synth",
                [
                    ctypes.c_void_p,
                    ctypes.c_size_t,
                    ctypes.c_uint,
                    ctypes.c_int,
                    ctypes.c_uint,
                    ctypes.c_uint,
                    ctypes.POINTER(ctypes.c_uint),
                    ctypes.c_void_p,
                ],
                ctypes.c_int,
            ),
        ):
            try:
                function = getattr(lib, name)
            except AttributeError as exc:
                raise SynthesisError(f"{library!r} lacks {name}; {_INSTALL_HINT}") from exc
            function.argtypes = argtypes
            function.restype = restype
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS,
            0,
            data_path.encode() if data_path is not None else None,
            _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_DONT_EXIT,
        )
        used = ctypes.c_char_p()
        lib.espeak_Info(ctypes.byref(used))
        used_path = (used.value or b"").decode("utf-8", "replace")
        if rate <= 0 or not Path(used_path, "phontab").is_file():
            raise SynthesisError(
                f"libespeak-ng could not be initialised (data looked for in {used_path!r}); {_INSTALL_HINT}"
            )
        self.lib = lib
        self.sample_rate = rate
        #: Voice already selected in this (forked) process, if any.
        self.loaded_voice: str | None = None
        self._chunks: list[bytes] = []
        self._events: list[list[Any]] = []
        self._callback = _SynthCallback(self._on_synth)  # keep the thunk alive
        lib.espeak_SetSynthCallback(self._callback)

    def _on_synth(self, wav: Any, n: int, events: Any) -> int:
        if wav and n > 0:
            self._chunks.append(ctypes.string_at(wav, 2 * n))
        i = 0
        while events:
            ev = events[i]
            kind = ev.type
            if kind == _EV_LIST_TERMINATED:
                break
            if kind in (_EV_WORD, _EV_PHONEME):
                # `sample` ("internal use" in the header) is the exact sample index
                # of the event; fall back to the millisecond position if they disagree.
                sample = ev.sample
                if abs(sample * 1000.0 / self.sample_rate - ev.audio_position) > 1.5:
                    sample = round(ev.audio_position * self.sample_rate / 1000.0)
                name = ev.id.string.decode("utf-8", "replace") if kind == _EV_PHONEME else ""
                self._events.append([kind, ev.text_position, sample, name])
            i += 1
        return 0

    def select_voice(self, name: str) -> None:
        """Select the voice like ``espeak-ng -v`` does."""
        lib = self.lib
        self.loaded_voice = None
        encoded = name.encode("utf-8")
        if lib.espeak_SetVoiceByName(encoded) != _EE_OK:
            # Same fallback as the CLI: select by language ("en-gb" -> gmw/en), but
            # refuse a voice that does not list the requested language. A "+variant"
            # suffix ("en-gb+m3") is applied by the library and not part of the language.
            spec = _VoiceSpec(languages=encoded)
            if lib.espeak_SetVoiceByProperties(ctypes.byref(spec)) != _EE_OK or (
                name.split("+", 1)[0].lower() not in _voice_languages(lib.espeak_GetCurrentVoice())
            ):
                raise SynthesisError(f"unknown espeak voice {name!r}")
        self.loaded_voice = name

    def set_voice(self, voice: dict[str, Any]) -> None:
        """Select the voice (unless the helper preloaded it) and set its parameters."""
        lib = self.lib
        if self.loaded_voice != voice["name"]:
            self.select_voice(str(voice["name"]))
        # The library state is pristine (freshly forked), so every other parameter
        # (volume, punctuation, capitals, ...) has its default value.
        for parameter, value in (
            (_P_RATE, voice["rate"]),
            (_P_PITCH, voice["pitch"]),
            (_P_RANGE, voice["pitch_range"]),
            (_P_WORDGAP, voice["word_gap"]),
        ):
            if lib.espeak_SetParameter(parameter, int(value), 0) != _EE_OK:
                raise SynthesisError(f"cannot set espeak parameter {parameter}={value}")

    def synth(self, text: str) -> tuple[bytes, list[list[Any]]]:
        """Speak ``text`` with the current voice: int16 bytes, WORD/PHONEME events."""
        data = text.encode("utf-8")
        buffer = ctypes.create_string_buffer(data)
        self._chunks, self._events = [], []
        rc = self.lib.espeak_Synth(
            buffer, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _ENDPAUSE, None, None
        )
        chunks, events = self._chunks, self._events
        self._chunks, self._events = [], []
        if rc != _EE_OK:
            raise SynthesisError(f"espeak_Synth failed with error {rc}")
        return b"".join(chunks), events

    def voices(self) -> list[str]:
        listed = self.lib.espeak_ListVoices(None)
        names: set[str] = set()
        i = 0
        while listed[i]:
            languages = _voice_languages(listed[i])
            if languages:
                names.add(languages[0])
            i += 1
        return sorted(names)

    def handle(self, request: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        """Serve one request in a pristine (freshly forked) library state."""
        if request["op"] == "voices":
            return {"voices": self.voices()}, b""
        text = str(request["text"])
        self.set_voice(request["voice"])
        audio, events = self.synth(text)
        # Tokens without a WORD event are spoken merged with the previous token; the
        # pronunciation in isolation of every token of such a group is needed to split
        # it.  Synthesised after the utterance, so they cannot influence its audio.
        tokens = [(m.start(), m.end()) for m in _TOKEN.finditer(text)]
        hit = {_token_index(tokens, e[1]) for e in events if e[0] == _EV_WORD}
        isolated: dict[str, list[str]] = {}
        for k, (s, e) in enumerate(tokens):
            token = text[s:e]
            merged = k not in hit or (k + 1 < len(tokens) and k + 1 not in hit)
            if merged and token not in isolated:
                _, token_events = self.synth(token)
                isolated[token] = [
                    ev[3] for ev in token_events if ev[0] == _EV_PHONEME and not _is_pause(ev[3])
                ]
        return {"events": events, "isolated": isolated, "sample_rate": self.sample_rate}, audio


def _relay(request: dict[str, Any], to_fd: int, from_fd: int) -> bytes:
    """Send ``request`` down a pipe pair and return the raw framed response."""
    _write_all(to_fd, _pack(request))
    prefix = _read_exact(from_fd, 12)
    head_len, payload_len = struct.unpack("<IQ", prefix)
    return prefix + _read_exact(from_fd, head_len + payload_len)


def _spawn(body: Any, close_in_child: tuple[int, ...] = ()) -> tuple[int, int, int]:
    """Fork a child running ``body(request_fd, response_fd)``; return its pid and
    the parent's ends (request writer, response reader)."""
    req_r, req_w = os.pipe()
    resp_r, resp_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.close(req_w)
            os.close(resp_r)
            for fd in close_in_child:
                os.close(fd)
            body(req_r, resp_w)
        finally:
            os._exit(0)
    os.close(req_r)
    os.close(resp_w)
    return pid, req_w, resp_r


def _close_child(child: tuple[int, int, int]) -> None:
    pid, req_w, resp_r = child
    os.close(req_w)  # a waiting child reads EOF and exits
    os.close(resp_r)
    os.waitpid(pid, 0)


def _answer_one(engine: _Engine, request_fd: int, response_fd: int) -> None:
    """Body of a one-shot worker: serve one request in a pristine library state."""
    import signal

    try:
        request = _read_message(request_fd)[0]
    except (EOFError, OSError):
        return
    signal.alarm(_UTTERANCE_TIMEOUT_S)  # default action: terminate this worker
    try:
        header, payload = engine.handle(request)
    except Exception as exc:  # reported to the caller, who raises SynthesisError
        header, payload = {"error": str(exc)}, b""
    _write_all(response_fd, _pack(header, payload))
    os.close(response_fd)  # EOF for the reader before this process has exited


def _serve(engine: _Engine, in_fd: int, out_fd: int, voice_name: str | None) -> None:
    """Answer requests from ``in_fd`` until EOF, each in a freshly forked worker.

    With ``voice_name`` this process first selects that voice (a per-voice server),
    so its workers inherit it; a spare worker is always forked in advance.
    """
    error: str | None = None
    if voice_name is not None:
        try:
            engine.select_voice(voice_name)
        except Exception as exc:
            error = str(exc)

    def fork_worker() -> tuple[int, int, int]:
        return _spawn(lambda r, w: _answer_one(engine, r, w), (in_fd, out_fd))

    spare = fork_worker()
    while True:
        try:
            request, _ = _read_message(in_fd)
        except EOFError:
            break
        if error is not None:
            _write_all(out_fd, _pack({"error": error}))
            continue
        pid, req_w, resp_r = spare
        try:
            response = _relay(request, req_w, resp_r)
        except (EOFError, OSError):
            response = b""
        finally:
            os.close(req_w)
            os.close(resp_r)
        if not response:
            _, status = os.waitpid(pid, 0)
            response = _pack({"error": f"synthesis process died (wait status {status})"})
            pid = 0
        _write_all(out_fd, response)  # before the worker has finished exiting
        if pid:
            os.waitpid(pid, 0)
        spare = fork_worker()  # prepared while the caller processes the response
    _close_child(spare)


#: Per-voice servers kept alive by the helper (least recently used ones are closed).
_MAX_VOICE_SERVERS = 8


def _zygote_main(library: str, data_path: str | None) -> None:
    """Entry point of the helper process (``python -I -S espeak.py --zygote ...``).

    Protocol on stdin/stdout: length-prefixed messages (see :func:`_pack`).  The
    library is initialised here and never used by this process itself.  For each
    voice a forked *voice server* selects that voice once (~4 ms, the same call
    sequence as the CLI: initialise, select voice, set parameters, synthesise) and
    then answers every request in a freshly forked worker, so every utterance starts
    from the state a fresh ``espeak-ng`` process has.  (Voices cannot be switched in
    one process without side effects: each selection queues an event that is only
    flushed by synthesising.)
    """
    import gc

    out_fd = os.dup(1)
    os.dup2(2, 1)  # anything the C library prints to stdout goes to stderr instead
    in_fd = 0
    try:
        engine = _Engine(library, None if data_path == "" else data_path)
    except Exception as exc:
        _write_all(out_fd, _pack({"error": str(exc)}))
        return
    # Short-lived forked workers: no cyclic GC, whose traversals would only copy
    # shared pages.
    gc.disable()
    gc.freeze()
    _write_all(out_fd, _pack({"ok": True, "sample_rate": engine.sample_rate}))

    servers: dict[str, tuple[int, int, int]] = {}  # insertion order = LRU order
    while True:
        try:
            request, _ = _read_message(in_fd)
        except EOFError:
            break
        if request.get("op") != "synth":
            worker = _spawn(lambda r, w: _answer_one(engine, r, w), (in_fd, out_fd))
            try:
                response = _relay(request, worker[1], worker[2])
            except (EOFError, OSError):
                response = _pack({"error": "helper worker died"})
            _close_child(worker)
            _write_all(out_fd, response)
            continue
        name = str(request["voice"]["name"])
        server = servers.pop(name, None)
        if server is None:
            others = tuple(fd for c in servers.values() for fd in c[1:])
            server = _spawn(lambda r, w, name=name: _serve(engine, r, w, name), (in_fd, out_fd, *others))
        try:
            response = _relay(request, server[1], server[2])
            servers[name] = server
        except (EOFError, OSError):
            _close_child(server)
            response = _pack({"error": "espeak voice server died"})
        while len(servers) > _MAX_VOICE_SERVERS:
            _close_child(servers.pop(next(iter(servers))))
        _write_all(out_fd, response)
    for server in servers.values():
        _close_child(server)


def _find_library(library: str | None) -> str:
    if library is not None:
        return library
    found = ctypes.util.find_library("espeak-ng")
    if found:
        return found
    if Path(_DEBIAN_LIBRARY).exists():
        return _DEBIAN_LIBRARY
    raise SynthesisError(f"libespeak-ng.so.1 not found; {_INSTALL_HINT}")


def _normalise_data_path(data_path: str | None) -> str | None:
    """The directory that *contains* ``espeak-ng-data`` (what espeak_Initialize wants)."""
    if data_path is None:
        return None
    path = Path(data_path)
    if (path / "espeak-ng-data").is_dir():
        return os.path.realpath(path)
    if path.name == "espeak-ng-data" and path.is_dir():
        return os.path.realpath(path.parent)
    raise SynthesisError(f"no espeak-ng-data directory in {data_path!r}; {_INSTALL_HINT}")


_HELPERS: weakref.WeakSet[_Helper] = weakref.WeakSet()


def _drop_inherited_helpers() -> None:
    """After ``fork``: close the child's copies of the parent's helper pipes, so that
    the parent's helpers still end when the parent closes them."""
    for helper in list(_HELPERS):
        if helper.pid != os.getpid():
            _HELPERS.discard(helper)
            helper._finalizer()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_inherited_helpers)


class _Helper:
    """Handle on a running helper process (owned by one OS process)."""

    def __init__(self, library: str, data_path: str | None) -> None:
        self.pid = os.getpid()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-S", os.path.abspath(__file__), "--zygote", library, data_path or ""],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                close_fds=True,
            )
        except OSError as exc:
            raise SynthesisError(f"cannot start the espeak helper process: {exc}") from exc
        assert self.process.stdin is not None and self.process.stdout is not None
        # Also at garbage collection / interpreter exit: closing the pipe ends the
        # helper, which ends its voice servers and workers.
        self._finalizer = weakref.finalize(self, _stop_helper, self.process, self.pid)
        _HELPERS.add(self)
        self.in_fd = self.process.stdout.fileno()
        self.out_fd = self.process.stdin.fileno()
        header, _ = self.receive()
        if "error" in header:
            self.close()
            raise SynthesisError(header["error"])
        self.sample_rate = int(header["sample_rate"])

    def receive(self) -> tuple[dict[str, Any], bytes]:
        try:
            return _read_message(self.in_fd)
        except (EOFError, OSError, ValueError) as exc:
            self.close()
            raise SynthesisError(f"the espeak helper process failed: {exc}") from exc

    def request(self, header: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        try:
            _write_all(self.out_fd, _pack(header))
        except OSError as exc:
            self.close()
            raise SynthesisError(f"the espeak helper process failed: {exc}") from exc
        return self.receive()

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        self._finalizer()


def _stop_helper(process: subprocess.Popen[bytes], owner_pid: int) -> None:
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            stream.close()
    if os.getpid() != owner_pid:
        return  # inherited through fork: the parent owns the process
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


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
        self._library = _find_library(library)
        self._data_path = _normalise_data_path(data_path)
        self._lock = threading.Lock()
        self._helper: _Helper | None = None
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

    def _get_helper(self) -> _Helper:
        helper = self._helper
        if helper is None or helper.pid != os.getpid() or not helper.alive:
            if helper is not None and helper.pid == os.getpid():
                helper.close()
            helper = self._helper = _Helper(self._library, self._data_path)
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
        import numpy as np

        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        pcm = self.synthesize_pcm(text, voice, split_merged=split_merged)
        if sample_rate == pcm.sample_rate:
            audio = pcm.samples.astype(np.float32) / np.float32(32768.0)
        else:
            from scipy.signal import resample_poly

            g = gcd(sample_rate, pcm.sample_rate)
            up, down = sample_rate // g, pcm.sample_rate // g
            resampled = resample_poly(
                pcm.samples.astype(np.float64) / 32768.0,
                up,
                down,
                window=_resampling_filter(up, down),
            )
            audio = np.clip(resampled, -1.0, 1.0).astype(np.float32)
        return Synthesis(audio=audio, sample_rate=sample_rate, words=pcm.words)

    def synthesize_pcm(self, text: str, voice: Voice, *, split_merged: bool = True) -> PcmSynthesis:
        """Like :meth:`synthesize` but return the native int16 samples at 22050 Hz.

        The samples are bit-identical to the data chunk written by
        ``espeak-ng -v NAME -s RATE -p PITCH -g WORD_GAP -w out.wav TEXT`` (the CLI
        has no option for ``pitch_range``, so only with the default 50).
        """
        import numpy as np

        tokens = [(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text)]
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


@functools.lru_cache(maxsize=8)
def _resampling_filter(up: int, down: int) -> np.ndarray:
    """The FIR filter :func:`scipy.signal.resample_poly` designs by default (Kaiser
    window, beta 5), computed once per ratio; passing it gives identical output."""
    from scipy.signal import firwin

    max_rate = max(up, down)
    taps = firwin(2 * 10 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0))
    taps.flags.writeable = False
    return taps


def _is_pause(phoneme: str) -> bool:
    return phoneme.startswith("_")


def _token_index(tokens: list[tuple[int, int]], text_position: int) -> int | None:
    """Token holding espeak's 1-based *character* position (a position in the blank
    before a token belongs to that token); None past the last token."""
    index = text_position - 1
    for k, (_, end) in enumerate(tokens):
        if index < end:
            return k
    return None


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
        if kind == _EV_WORD:
            k = _token_index(bounds, position)
            if k is None:
                raise fail(f"espeak word at character {position} matches no token")
            if groups and k == groups[-1][0]:
                continue  # one token spoken as several words: it starts at the first
            if groups and k < groups[-1][0]:
                raise fail("espeak words out of order")
            groups.append((k, sample, []))
        elif kind == _EV_PHONEME and groups:
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
        real = [i for i, (p, _) in enumerate(phonemes) if not _is_pause(p)]
        if not real:
            raise fail(f"no phonemes for token {tokens[k][0]!r}")
        end = limit
        for p, s in phonemes[real[-1] + 1 :]:
            if _is_pause(p):
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
    real = [i for i, (p, _) in enumerate(phonemes) if not _is_pause(p)]
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


if __name__ == "__main__" and sys.argv[1:2] == ["--zygote"]:
    _zygote_main(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
