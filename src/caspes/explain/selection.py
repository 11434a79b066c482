"""Which utterances of a decoded split are explained, and which of them one shard computes.

The first ``max_utterances`` of the cross-attention store (its order is the manifest's), all when
None; shard ``k`` of ``n`` takes every ``n``-th of them starting at ``k``, so shards are balanced
and the gathered store keeps the store order.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["select_ids", "shard_ids"]


def select_ids(ids: Sequence[str], max_utterances: int | None) -> list[str]:
    """The first ``max_utterances`` ids (all when None)."""
    if max_utterances is not None and max_utterances < 1:
        raise ValueError(f"max_utterances must be >= 1 or null, got {max_utterances}")
    return list(ids) if max_utterances is None else list(ids)[:max_utterances]


def shard_ids(ids: Sequence[str], index: int, count: int) -> list[str]:
    """Ids of shard ``index`` (0-based) of ``count``: every ``count``-th id from ``index``."""
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard index {index} of {count} is out of range")
    return list(ids)[index::count]
