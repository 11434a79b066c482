"""Frame-budget batching: consecutive utterances of an order, packed so that padding stays bounded."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["pack_by_frames"]


def pack_by_frames(
    order: Iterable[int], n_frames: Sequence[int], max_frames: int, max_size: int | None = None
) -> list[list[int]]:
    """Split ``order`` (utterance indices) into consecutive batches with
    ``len(batch) * longest <= max_frames`` (``longest``: the batch's most frames once padded) and
    at most ``max_size`` utterances; an utterance longer than ``max_frames`` gets a batch of its own.

    With ``order`` sorted by length (either way) this is the usual length-bucketed batching.
    """
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        n = int(n_frames[i])
        full = max_size is not None and len(current) >= max_size
        if current and (full or (len(current) + 1) * max(longest, n) > max_frames):
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, n)
    if current:
        batches.append(current)
    return batches
