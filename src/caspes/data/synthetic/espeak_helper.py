"""The helper process of :mod:`.espeak`: libespeak-ng through ctypes, one fork per utterance.

:class:`HelperProcess` (used by :class:`.espeak.EspeakSynthesizer`) starts this file as a
script, ``python -I -S espeak_helper.py --zygote LIBRARY DATA_PATH``: in isolated mode,
without ``site``, so without the ``caspes`` package on ``sys.path`` and without numpy.
This module must therefore import nothing but the standard library (and nothing from
its sibling modules); its public names are also used by :mod:`.espeak`, which imports
it as an ordinary module.

What runs in the helper (see :mod:`.espeak` for why every utterance needs a fresh
library state):

* the *zygote* (:func:`_zygote_main`) loads and initialises libespeak-ng
  (:class:`_Engine`, a ctypes binding of the few functions needed) and never
  synthesises itself;
* per voice it forks a *voice server* (:func:`_serve`) that selects the voice once; the
  least recently used servers are closed beyond :data:`_MAX_VOICE_SERVERS`;
* a voice server answers each request in a *worker* forked from it in advance
  (:func:`_answer_one`), which synthesises one utterance and exits; other requests
  (the list of voices) go to a worker forked from the zygote itself.

Requests and responses travel over pipes (the zygote's stdin/stdout) as
length-prefixed messages: a little-endian ``uint32`` header length and ``uint64``
payload length, a JSON header, then the payload (int16 samples for a synthesis), see
:func:`_pack` / :func:`_read_message`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import os
import re
import signal
import struct
import subprocess
import sys
import weakref
from pathlib import Path
from typing import Any

__all__ = [
    "SynthesisError",
    "TOKEN",
    "EV_WORD",
    "EV_PHONEME",
    "is_pause",
    "token_index",
    "find_library",
    "normalise_data_path",
    "HelperProcess",
]


_DEBIAN_LIBRARY = "/usr/lib/x86_64-linux-gnu/libespeak-ng.so.1"
_INSTALL_HINT = "install the Debian package espeak-ng (apt-get install espeak-ng)"

#: Seconds after which a single utterance is abandoned (the forked child is killed).
_UTTERANCE_TIMEOUT_S = 120

#: Per-voice servers kept alive by the helper (least recently used ones are closed).
_MAX_VOICE_SERVERS = 8

# --- constants from <espeak-ng/speak_lib.h> (API revision 12, espeak-ng 1.51) -------
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_DONT_EXIT = 0x8000  # report missing data instead of calling exit()
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000  # the CLI always passes it: pause at the end of the text
_EE_OK = 0
_EV_LIST_TERMINATED = 0
_P_RATE = 1
_P_PITCH = 3
_P_RANGE = 4
_P_WORDGAP = 7

#: Event types passed on to :mod:`.espeak` in each response's ``events`` list of
#: ``[type, 1-based character position, sample index, phoneme mnemonic]``.
EV_WORD = 1
EV_PHONEME = 7

#: A token of the text: a maximal run of non-whitespace characters.
TOKEN = re.compile(r"\S+")


class SynthesisError(RuntimeError):
    """Synthesis failed or its word times could not be established reliably.

    (Defined here because the helper process raises it too; :mod:`.espeak` exports
    this class.  Errors in the helper reach the caller as messages and are raised
    again there.)
    """


def is_pause(phoneme: str) -> bool:
    """True for espeak's pause phonemes (mnemonics beginning with ``_``)."""
    return phoneme.startswith("_")


def token_index(tokens: list[tuple[int, int]], text_position: int) -> int | None:
    """Token holding espeak's 1-based *character* position (a position in the blank
    before a token belongs to that token); None past the last token."""
    index = text_position - 1
    for k, (_, end) in enumerate(tokens):
        if index < end:
            return k
    return None


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
            if kind in (EV_WORD, EV_PHONEME):
                # `sample` ("internal use" in the header) is the exact sample index
                # of the event; fall back to the millisecond position if they disagree.
                sample = ev.sample
                if abs(sample * 1000.0 / self.sample_rate - ev.audio_position) > 1.5:
                    sample = round(ev.audio_position * self.sample_rate / 1000.0)
                name = ev.id.string.decode("utf-8", "replace") if kind == EV_PHONEME else ""
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
        tokens = [(m.start(), m.end()) for m in TOKEN.finditer(text)]
        hit = {token_index(tokens, e[1]) for e in events if e[0] == EV_WORD}
        isolated: dict[str, list[str]] = {}
        for k, (s, e) in enumerate(tokens):
            token = text[s:e]
            merged = k not in hit or (k + 1 < len(tokens) and k + 1 not in hit)
            if merged and token not in isolated:
                _, token_events = self.synth(token)
                isolated[token] = [
                    ev[3] for ev in token_events if ev[0] == EV_PHONEME and not is_pause(ev[3])
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


def _fork_worker(engine: _Engine, close_in_child: tuple[int, ...]) -> tuple[int, int, int]:
    """Fork a one-shot worker (:func:`_answer_one`), closing ``close_in_child`` in it."""
    return _spawn(lambda r, w: _answer_one(engine, r, w), close_in_child)


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

    spare = _fork_worker(engine, (in_fd, out_fd))
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
        spare = _fork_worker(engine, (in_fd, out_fd))  # prepared while the caller reads the response
    _close_child(spare)


def _zygote_main(library: str, data_path: str | None) -> None:
    """Entry point of the helper process (``python -I -S espeak_helper.py --zygote ...``).

    Protocol on stdin/stdout: length-prefixed messages (see :func:`_pack`).  The
    library is initialised here and never used by this process itself.  For each
    voice a forked *voice server* selects that voice once (~4 ms, the same call
    sequence as the CLI: initialise, select voice, set parameters, synthesise) and
    then answers every request in a freshly forked worker, so every utterance starts
    from the state a fresh ``espeak-ng`` process has.  (Voices cannot be switched in
    one process without side effects: each selection queues an event that is only
    flushed by synthesising.)
    """

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
            worker = _fork_worker(engine, (in_fd, out_fd))
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


def find_library(library: str | None) -> str:
    """``library`` if given, else libespeak-ng as found by :func:`ctypes.util.find_library`,
    else the Debian location."""
    if library is not None:
        return library
    found = ctypes.util.find_library("espeak-ng")
    if found:
        return found
    if Path(_DEBIAN_LIBRARY).exists():
        return _DEBIAN_LIBRARY
    raise SynthesisError(f"libespeak-ng.so.1 not found; {_INSTALL_HINT}")


def normalise_data_path(data_path: str | None) -> str | None:
    """The directory that *contains* ``espeak-ng-data`` (what espeak_Initialize wants)."""
    if data_path is None:
        return None
    path = Path(data_path)
    if (path / "espeak-ng-data").is_dir():
        return os.path.realpath(path)
    if path.name == "espeak-ng-data" and path.is_dir():
        return os.path.realpath(path.parent)
    raise SynthesisError(f"no espeak-ng-data directory in {data_path!r}; {_INSTALL_HINT}")


_HELPERS: weakref.WeakSet[HelperProcess] = weakref.WeakSet()


def _drop_inherited_helpers() -> None:
    """After ``fork``: close the child's copies of the parent's helper pipes, so that
    the parent's helpers still end when the parent closes them."""
    for helper in list(_HELPERS):
        if helper.pid != os.getpid():
            _HELPERS.discard(helper)
            helper._finalizer()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_inherited_helpers)


class HelperProcess:
    """Handle on a running helper process (owned by one OS process).

    Starts this file as a script (see the module docstring); raises
    :class:`SynthesisError` if it cannot start or cannot initialise the library.
    """

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
            raise self._failed(exc) from exc

    def request(self, header: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        """Send one request and wait for its response (header, payload)."""
        try:
            _write_all(self.out_fd, _pack(header))
        except OSError as exc:
            raise self._failed(exc) from exc
        return self.receive()

    def _failed(self, exc: Exception) -> SynthesisError:
        """Close the broken helper; the error to raise."""
        self.close()
        return SynthesisError(f"the espeak helper process failed: {exc}")

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


if __name__ == "__main__" and sys.argv[1:2] == ["--zygote"]:
    _zygote_main(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
