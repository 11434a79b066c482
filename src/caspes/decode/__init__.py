"""Decoding: greedy and beam search, quality metrics, and the teacher-forced re-score
that dumps cross-attention. In: a checkpoint and features; out: hypotheses, quality rows,
cross-attention stores.
"""
