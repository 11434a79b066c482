"""Which utterances a corpus keeps: duration bounds, non-empty texts, and a log of every skip."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from caspes.core.manifest import DataError, Skip

__all__ = ["UtterancePolicy", "SkipLog", "check_text", "check_duration"]

log = logging.getLogger(__name__)

MIN_DURATION_S = 0.025  # one 25 ms analysis window: shorter audio yields no fbank frame


FEATURE_SHIFT_S = 0.010


@dataclass(frozen=True)
class UtterancePolicy:
    """What counts as usable: ``max_duration_s`` (default 30 s, as fairseq's length filter in the
    paper) and whether a bad utterance is skipped (``"skip"``) or stops the run (``"error"``)."""

    max_duration_s: float = 30.0
    on_bad: str = "skip"

    def __post_init__(self) -> None:
        if self.on_bad not in ("skip", "error"):
            raise ValueError(f"on_bad must be 'skip' or 'error', got {self.on_bad!r}")
        if self.max_duration_s <= 0:
            raise ValueError(f"max_duration_s must be positive, got {self.max_duration_s}")


@dataclass
class SkipLog:
    """Collects skips under a policy; raises instead when the policy says ``error``."""

    policy: UtterancePolicy
    skips: list[Skip] = field(default_factory=list)

    def add(self, skip: Skip) -> None:
        if self.policy.on_bad == "error":
            raise DataError(f"{skip.source}: utterance '{skip.id}': {skip.reason} ({skip.detail})")
        self.skips.append(skip)

    def counts(self) -> Counter[str]:
        return Counter(s.reason for s in self.skips)

    def report(self, what: str, kept: int) -> str:
        """One log line: kept / skipped counts by reason."""
        counts = self.counts()
        by_reason = ", ".join(f"{r}={n}" for r, n in sorted(counts.items())) or "none"
        line = f"{what}: kept {kept} utterances, skipped {len(self.skips)} ({by_reason})"
        (log.warning if self.skips else log.info)(line)
        return line


def check_text(uid: str, texts: dict[str, str], source: str) -> Skip | None:
    """A Skip if any of the named texts (e.g. src_text, tgt_text) is empty after stripping."""
    empty = [name for name, value in texts.items() if not value.strip()]
    if empty:
        return Skip(uid, source, "empty_text", f"empty {', '.join(empty)}")
    return None


def check_duration(uid: str, duration_s: float, policy: UtterancePolicy, source: str) -> Skip | None:
    """A Skip if the duration is over the maximum or shorter than one analysis window."""
    if duration_s > policy.max_duration_s:
        return Skip(uid, source, "too_long", f"{duration_s:.2f} s > max_duration_s {policy.max_duration_s:g}")
    if duration_s < MIN_DURATION_S:
        return Skip(uid, source, "too_short", f"{duration_s:.3f} s < {MIN_DURATION_S} s")
    return None
