"""Import the raw EuroParl-ST v1.1 release into our manifests.

Release layout (one language pair, one split)::

    <root>/<src>/audios/<speech_id>.m4a          whole speeches
    <root>/<src>/<tgt>/<split>/segments.lst      "<speech_id> <start_s> <end_s>" per segment
    <root>/<src>/<tgt>/<split>/segments.<src>    transcript, line-aligned with segments.lst
    <root>/<src>/<tgt>/<split>/segments.<tgt>    translation, line-aligned with segments.lst
    <root>/<src>/<tgt>/<split>/speakers.lst      optional speaker ids (see below)
    <root>/<src>/<tgt>/<split>/speeches.lst      speech ids (only used to map speakers.lst)

Each speech is decoded once with ffmpeg (mono, 16 kHz, float32), and every usable segment is cut
out (samples ``[round(start*16000), round(end*16000))``) and written as a 16-bit WAV
``<audio_dir>/<speech_id>_<k>.wav``, ``k`` being the segment's 0-based position among the
segments of its speech in segments.lst order (counted before any skipping, so ids are stable).

Speakers: ``speakers.lst`` is used per segment when it has as many lines as segments.lst,
per speech (through the speech ids of ``speeches.lst``) when it has as many lines as
speeches.lst, and otherwise ignored with a warning. Without it (or for an empty line, or a
speech missing from speeches.lst) the speaker is the speech id.

Quirks of real releases: a segment that ends at or before its start is a counted skip
(``empty_segment`` / ``negative_segment``, naming ``segments.lst:<line>``; an error under
``on_bad_utterance: error``); blank lines at the end of ``segments.{lst,<src>,<tgt>}`` are ignored
(a blank line inside ``segments.lst`` is an error naming its line; an empty transcript line is an
``empty_text`` skip); CRLF line endings and a UTF-8 byte-order mark are accepted.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from caspes.core.audio import n_frames_for_duration, write_audio
from caspes.core.manifest import DataError, Skip, write_manifest, write_skipped
from caspes.data.policy import SkipLog, UtterancePolicy, check_duration, check_text

__all__ = ["SAMPLE_RATE", "OUT_OF_RANGE_TOLERANCE_S", "EuroparlSplit", "import_europarl_st"]

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000


OUT_OF_RANGE_TOLERANCE_S = 0.1
"""A segment may end at most this far past the decoded audio; its cut is then just shorter."""


@dataclass(frozen=True)
class EuroparlSplit:
    """One split of one language pair of a EuroParl-ST release rooted at ``root``."""

    root: Path
    src_lang: str
    tgt_lang: str
    split: str

    @property
    def folder(self) -> Path:
        return Path(self.root) / self.src_lang / self.tgt_lang / self.split

    @property
    def audio_folder(self) -> Path:
        return Path(self.root) / self.src_lang / "audios"


@dataclass(frozen=True)
class _Segment:
    line: int  # 1-based line in segments.lst
    speech: str
    k: int  # 0-based index within its speech
    start: float
    end: float
    src_text: str
    tgt_text: str
    speaker: str

    @property
    def id(self) -> str:
        return f"{self.speech}_{self.k}"


def _read_lines(path: Path) -> list[str]:
    """Lines of a UTF-8 text file, split on ``\\n`` only (a stray ``\\r`` or Unicode line
    separator inside a transcript must not shift the line alignment); one final newline and
    trailing ``\\r`` are dropped."""
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    parts = data.split(b"\n")
    if parts and parts[-1] == b"":
        parts.pop()
    lines: list[str] = []
    for i, raw in enumerate(parts, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}:{i}: not valid UTF-8 ({exc})") from None
        lines.append(text[:-1] if text.endswith("\r") else text)
    return lines


def _clean_text(text: str) -> str:
    """Strip, and turn the characters a TSV manifest cannot hold (tab, CR, ...) into spaces."""
    for ch in "\t\r\v\f":
        text = text.replace(ch, " ")
    return text.strip()


def _require_file(path: Path) -> Path:
    if not path.is_file():
        raise DataError(f"{path}: file not found (EuroParl-ST layout <root>/<src>/<tgt>/<split>/)")
    return path


def _drop_trailing_blank(path: Path, lines: list[str], keep: int = 0) -> list[str]:
    """``lines`` without the blank lines at the end of the file beyond the first ``keep`` lines
    (an editor's extra newline; an empty last transcript of a line-aligned file is kept)."""
    n = len(lines)
    while n > keep and not lines[n - 1].strip():
        n -= 1
    if n < len(lines):
        log.warning("%s: ignoring %d blank line(s) at the end of the file", path, len(lines) - n)
    return lines[:n]


def _parse_segments(path: Path) -> list[tuple[int, str, float, float]]:
    """(line, speech id, start, end) for every line of segments.lst; DataError on a bad line
    (blank lines at the end of the file are ignored, a blank line elsewhere is an error).  A
    segment that does not end after its start is returned as it is: the import counts it as a
    skip (:func:`import_europarl_st`)."""
    out: list[tuple[int, str, float, float]] = []
    for line_no, line in enumerate(_drop_trailing_blank(path, _read_lines(path)), start=1):
        fields = line.split()
        if len(fields) != 3:
            raise DataError(
                f"{path}:{line_no}: expected '<speech_id> <start_s> <end_s>', got {len(fields)} field(s): {line!r}"
            )
        speech, start_s, end_s = fields
        try:
            start, end = float(start_s), float(end_s)
        except ValueError:
            raise DataError(f"{path}:{line_no}: start/end are not numbers: {line!r}") from None
        if not (np.isfinite(start) and np.isfinite(end)) or start < 0:
            raise DataError(f"{path}:{line_no}: bad times start={start_s} end={end_s}")
        if "/" in speech or "\\" in speech or speech in (".", ".."):
            raise DataError(f"{path}:{line_no}: speech id {speech!r} is not a plain file name")
        out.append((line_no, speech, start, end))
    return out


def _speakers(folder: Path, speeches_of_segments: list[str]) -> list[str]:
    """Speaker per segment, following the rules in the module docstring."""
    default = list(speeches_of_segments)
    spk_path = folder / "speakers.lst"
    if not spk_path.is_file():
        return default
    speakers = [" ".join(s.split()) for s in _read_lines(spk_path)]
    n_seg = len(speeches_of_segments)
    if len(speakers) == n_seg:
        return [spk or speech for spk, speech in zip(speakers, speeches_of_segments)]
    speeches_path = folder / "speeches.lst"
    if speeches_path.is_file():
        speech_lines = _read_lines(speeches_path)
        if len(speakers) == len(speech_lines):
            by_speech: dict[str, str] = {}
            for line, spk in zip(speech_lines, speakers):
                fields = line.split()
                if fields and spk:
                    by_speech.setdefault(fields[0], spk)
            unknown = sorted({s for s in speeches_of_segments if s not in by_speech})
            if unknown:
                log.warning(
                    "%s: no speaker for %d speech(es) (e.g. %s); using the speech id",
                    spk_path,
                    len(unknown),
                    unknown[0],
                )
            return [by_speech.get(s, s) for s in speeches_of_segments]
        n_speeches = f"{len(speech_lines)} in {speeches_path}"
    else:
        n_speeches = f"{speeches_path} missing"
    log.warning(
        "%s: %d lines match neither segments.lst (%d) nor speeches.lst (%s); ignoring it, "
        "speaker = speech id",
        spk_path,
        len(speakers),
        n_seg,
        n_speeches,
    )
    return default


def _read_split(split: EuroparlSplit) -> tuple[Path, list[_Segment]]:
    folder = split.folder
    if not folder.is_dir():
        raise DataError(f"{folder}: EuroParl-ST split folder not found (<root>/<src>/<tgt>/<split>)")
    lst = _require_file(folder / "segments.lst")
    src_path = _require_file(folder / f"segments.{split.src_lang}")
    tgt_path = _require_file(folder / f"segments.{split.tgt_lang}")

    entries = _parse_segments(lst)
    src_lines = _drop_trailing_blank(src_path, _read_lines(src_path), keep=len(entries))
    tgt_lines = _drop_trailing_blank(tgt_path, _read_lines(tgt_path), keep=len(entries))
    for path, lines in ((src_path, src_lines), (tgt_path, tgt_lines)):
        if len(lines) != len(entries):
            raise DataError(
                f"{path} has {len(lines)} lines but {lst} has {len(entries)}; they must be line-aligned"
            )
    speakers = _speakers(folder, [e[1] for e in entries])

    counters: dict[str, int] = {}
    segments: list[_Segment] = []
    for (line_no, speech, start, end), src, tgt, spk in zip(entries, src_lines, tgt_lines, speakers):
        k = counters.get(speech, 0)
        counters[speech] = k + 1
        segments.append(_Segment(line_no, speech, k, start, end, _clean_text(src), _clean_text(tgt), spk))
    return lst, segments


def _check_times(seg: _Segment, source: str) -> Skip | None:
    """A Skip for a segment of zero or negative length (end at or before start)."""
    if seg.end > seg.start:
        return None
    reason = "empty_segment" if seg.end == seg.start else "negative_segment"
    return Skip(seg.id, source, reason, f"segment {seg.start:g}-{seg.end:g} s ends at or before its start")


def _find_ffmpeg(ffmpeg: str) -> str:
    found = shutil.which(ffmpeg)
    if found is None:
        raise DataError(
            f"ffmpeg executable {ffmpeg!r} not found: EuroParl-ST audio is m4a/AAC and is decoded with "
            "ffmpeg; install the Debian package ffmpeg (apt-get install ffmpeg) or pass its path"
        )
    return found


def _decode(ffmpeg: str, path: Path) -> np.ndarray:
    """Whole file as float32 mono at 16 kHz; DataError carrying ffmpeg's first stderr line."""
    cmd = [
        ffmpeg,
        "-nostdin",
        "-v",
        "error",
        "-i",
        str(path),
        "-ac",
        "1",
        "-ar",
        str(SAMPLE_RATE),
        "-f",
        "f32le",
        "-",
    ]
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    except FileNotFoundError:
        raise DataError(
            f"ffmpeg executable {ffmpeg!r} not found: install the Debian package ffmpeg"
        ) from None
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        first = err[0].strip() if err else f"ffmpeg exited with status {proc.returncode}"
        first = re.sub(r" @ 0x[0-9a-fA-F]+\]", "]", first)  # drop run-specific pointers
        raise DataError(first)
    samples = np.frombuffer(proc.stdout, dtype="<f4")
    if samples.size == 0:
        raise DataError("ffmpeg decoded no audio samples")
    return samples.astype(np.float32, copy=False)


def _relative(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path.absolute(), start.absolute())).as_posix()


def _group(segments: Iterable[_Segment]) -> dict[str, list[_Segment]]:
    groups: dict[str, list[_Segment]] = {}
    for seg in segments:
        groups.setdefault(seg.speech, []).append(seg)
    return groups


def import_europarl_st(
    split: EuroparlSplit,
    manifest_path: Path,
    audio_dir: Path,
    policy: UtterancePolicy,
    skipped_path: Path,
    ffmpeg: str = "ffmpeg",
    progress: bool = True,
) -> tuple[int, SkipLog]:
    """Cut one EuroParl-ST split into per-segment WAVs and write its manifest and skipped report.

    Returns (rows written, SkipLog). Malformed or misaligned lists raise DataError naming the
    file (and line); unusable segments (missing/unreadable audio, out of range, empty text,
    too long/short) are Skips, written to ``skipped_path`` — or, with ``policy.on_bad ==
    "error"``, the first one raises DataError.
    """
    manifest_path = Path(manifest_path)
    audio_dir = Path(audio_dir)
    skipped_path = Path(skipped_path)
    lst, segments = _read_split(split)
    ffmpeg_exe = _find_ffmpeg(ffmpeg)
    skips = SkipLog(policy)
    rows: dict[int, dict[str, object]] = {}  # keyed by segments.lst line, written in that order
    audio_folder = split.audio_folder

    groups = _group(segments)
    speeches: Iterable[str] = groups
    if progress:
        speeches = tqdm(
            groups, desc=f"EuroParl-ST {split.src_lang}-{split.tgt_lang} {split.split}", unit="speech"
        )

    for speech in speeches:
        segs = groups[speech]
        m4a = audio_folder / f"{speech}.m4a"
        if not m4a.is_file():
            for seg in segs:
                skips.add(Skip(seg.id, f"{lst}:{seg.line}", "missing_audio", f"{m4a} not found"))
            continue

        # Checks that need no audio first, so that a speech is decoded only when needed.
        todo: list[_Segment] = []
        for seg in segs:
            source = f"{lst}:{seg.line}"
            skip = _check_times(seg, source)
            if skip is None:
                skip = check_text(seg.id, {"src_text": seg.src_text, "tgt_text": seg.tgt_text}, source)
            if skip is None:
                skip = check_duration(seg.id, seg.end - seg.start, policy, source)
            if skip is None:
                todo.append(seg)
            else:
                skips.add(skip)
        if not todo:
            continue

        try:
            audio = _decode(ffmpeg_exe, m4a)
        except DataError as exc:
            for seg in todo:
                skips.add(Skip(seg.id, f"{lst}:{seg.line}", "unreadable_audio", f"{m4a}: {exc}"))
            continue
        length_s = audio.size / SAMPLE_RATE

        for seg in todo:
            source = f"{lst}:{seg.line}"
            if seg.end > length_s + OUT_OF_RANGE_TOLERANCE_S:
                skips.add(
                    Skip(
                        seg.id,
                        source,
                        "out_of_range",
                        f"segment ends at {seg.end:.3f} s but {m4a} lasts {length_s:.3f} s",
                    )
                )
                continue
            cut = audio[round(seg.start * SAMPLE_RATE) : round(seg.end * SAMPLE_RATE)]
            duration = cut.size / SAMPLE_RATE
            skip = check_duration(seg.id, duration, policy, source)  # a cut shortened at the end
            if skip is not None:
                skips.add(skip)
                continue
            wav = audio_dir / f"{seg.id}.wav"
            write_audio(wav, cut, SAMPLE_RATE)
            rows[seg.line] = {
                "id": seg.id,
                "audio": _relative(wav, manifest_path.parent),
                "n_frames": n_frames_for_duration(duration),
                "src_text": seg.src_text,
                "tgt_text": seg.tgt_text,
                "speaker": seg.speaker,
                "src_lang": split.src_lang,
                "tgt_lang": split.tgt_lang,
            }
        del audio

    n = write_manifest(manifest_path, [rows[line] for line in sorted(rows)])
    write_skipped(skipped_path, skips.skips)
    skips.report(f"EuroParl-ST {split.src_lang}-{split.tgt_lang} {split.split} -> {manifest_path}", n)
    return n, skips
