"""caspes: cross-attention vs SPES saliency in speech-to-text models.

Regenerates "Cross-Attention is Half Explanation in Speech-to-Text Models" from raw
(synthesised) audio to tables and figures. All logic lives here; the Snakemake workflow
only wires files to these functions.
"""

__version__ = "0.1.0"
