"""Explanations: SLIC segmentation, the SPES engine (SM^X over the input, SM^H over
the encoder output), saliency stores, sharded runs, map normalisation, deletion and size. In:
checkpoint, features, hypotheses; out: saliency stores, deletion and size curves.
"""
