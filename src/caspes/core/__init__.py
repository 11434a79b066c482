"""Shared by every stage: manifests and audio files, zip stores, atomic writes, config
checks, per-rule logging. Imports nothing from the other stages.
"""
