"""Tiny models shared by the decoding, beam-search and cross-attention tests."""

import pytest
import torch

from caspes.model import ModelDimensions, S2TModel


def tiny_model(
    seed: int,
    *,
    vocab: int,
    n_mels: int = 8,
    d_model: int = 16,
    ffn: int = 32,
    conv_channels: int = 16,
    conv_kernel: int = 5,
    decoder_layers: int = 2,
    max_target_positions: int = 32,
    **overrides: object,
) -> S2TModel:
    """A seeded random S2TModel in float64 and eval mode (argmax comparisons between cached,
    uncached and batched paths cannot flip on ties)."""
    torch.manual_seed(seed)
    dims = dict(
        d_model=d_model,
        encoder_layers=1,
        decoder_layers=decoder_layers,
        encoder_heads=2,
        decoder_heads=2,
        encoder_ffn=ffn,
        decoder_ffn=ffn,
        vocab_size=vocab,
        n_mels=n_mels,
        conv_channels=conv_channels,
        conv_kernel=conv_kernel,
        dropout=0.0,
        max_target_positions=max_target_positions,
    )
    dims.update(overrides)
    return S2TModel(ModelDimensions(**dims)).double().eval()  # type: ignore[arg-type]


def fake_model_dims(vocab: int, n_mels: int, max_target_positions: int) -> ModelDimensions:
    """Dimensions carried by the scripted stand-in models (only ids, sizes and limits are read)."""
    return ModelDimensions(
        d_model=4,
        encoder_layers=1,
        decoder_layers=1,
        encoder_heads=1,
        decoder_heads=1,
        encoder_ffn=4,
        decoder_ffn=4,
        vocab_size=vocab,
        n_mels=n_mels,
        conv_channels=4,
        max_target_positions=max_target_positions,
    )


@pytest.fixture
def one_thread():
    """Tiny models: one intra-op thread is fastest and leaves the other core alone."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
