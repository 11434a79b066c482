"""Corpora: the utterance policy, the user's manifests, EuroParl-ST, and the embedded
synthetic corpus (:mod:`caspes.data.synthetic`). In: raw audio and texts; out: manifests, audio,
skipped-utterance logs.
"""
