"""Speech-to-text model (Conformer encoder + Transformer decoder + joint CTC).

Re-exports the public API of :mod:`caspes.model.s2t`, :mod:`caspes.model.conformer`,
:mod:`caspes.model.decoder` and :mod:`caspes.model.attention`.
"""

from .attention import MultiHeadAttention, causal_mask
from .conformer import (
    ConformerEncoder,
    EncoderOutput,
    lengths_to_padding_mask,
    subsampled_lengths,
)
from .decoder import DecoderCache, TransformerDecoder
from .s2t import (
    PAPER_DIMENSIONS,
    PAPER_PARAMETERS,
    DecoderOutput,
    ModelDimensions,
    S2TModel,
    S2TOutput,
    count_parameters,
)

__all__ = [
    "PAPER_DIMENSIONS",
    "PAPER_PARAMETERS",
    "ConformerEncoder",
    "DecoderCache",
    "DecoderOutput",
    "EncoderOutput",
    "ModelDimensions",
    "MultiHeadAttention",
    "S2TModel",
    "S2TOutput",
    "TransformerDecoder",
    "causal_mask",
    "count_parameters",
    "lengths_to_padding_mask",
    "subsampled_lengths",
]
