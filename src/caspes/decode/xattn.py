"""Decoder cross-attention of a final hypothesis, and its on-disk store.

Extraction
    Whisper's way: after decoding, the final hypothesis is re-scored in *one* teacher-forced pass
    (:meth:`S2TModel.decode_teacher_forced` with ``return_attention=True``) over the utterance's
    encoder states.  The weights equal, to rounding, those seen during incremental decoding of the
    same hypothesis (the decoder is causal), but do not depend on how the search got there.

Row convention
    For a target ``[<lang:xx>, y_1 .. y_n]`` (what :func:`caspes.decode.run.decode_manifest` calls the
    pieces, i.e. forced prefix + generated ids, no EOS):

    * ``decoder_input = [EOS (as BOS), <lang:xx>, y_1 .. y_n]`` (``I = n + 2`` positions);
    * ``target_ids = [<lang:xx>, y_1 .. y_n, EOS]`` (same length ``I``);
    * ``attention[l, h, i, t]`` is the cross-attention weight of decoder layer ``l``, head ``h``,
      of the query at decoder input position ``i`` on encoder frame ``t``: the row whose output
      *predicts* ``target_ids[i]`` (it has seen ``decoder_input[: i + 1]``, i.e. the tokens before
      ``target_ids[i]``).  Row 0 predicts the language tag, row ``k`` (``1 <= k <= n``) predicts
      ``y_k``, the last row predicts EOS (:func:`row_roles`: ``'lang'``, ``'token'``, ``'eos'``);
    * ``t`` runs over the utterance's own ``T'`` encoder frames (padding of a batch is cut off),
      every row sums to 1 over ``t``.

Store (one file per split, e.g. ``<split>.xattn.zip``)
    An uncompressed (``ZIP_STORED``) zip with one member ``<id>.npz`` per utterance, in the order
    written; each member is an ``.npz`` (itself a zip, ``ZIP_DEFLATED``) readable with
    :func:`numpy.load` (no pickles) holding:

    * ``id``: 0-d unicode array, the utterance id;
    * ``attention``: float16 (L, H, I, T');
    * ``decoder_input``, ``target_ids``: int32 (I,);
    * ``pieces``: unicode (I,), the SentencePiece piece of each target id (``</s>`` for EOS);
    * ``roles``: unicode (I,), :func:`row_roles`;
    * ``encoder_length``: 0-d int32, ``T'``.

    Every zip entry gets a fixed timestamp (1980-01-01) and the arrays are written in a fixed
    order, so rewriting the same records gives a byte-identical file (same zlib).  A reader
    decompresses one utterance at a time (:class:`CrossAttentionStore`).  float16 keeps weights to
    about 3 significant digits (rows sum to 1 within ~1e-3).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from caspes.core.manifest import DataError
from caspes.core.zipstore import RecordArchive, RecordArchiveWriter, check_uid
from caspes.model.inference import as_batch, check_decoder_input, eval_mode, model_device_dtype
from caspes.tokenizer import EOS_ID

__all__ = [
    "ROLES",
    "decoder_io",
    "row_roles",
    "extract_cross_attention_batch",
    "extract_cross_attention",
    "CrossAttentionRecord",
    "CrossAttentionStoreWriter",
    "CrossAttentionStore",
    "write_cross_attention_store",
]

ROLES: tuple[str, ...] = ("lang", "prompt", "token", "eos")


_FIELDS = ("id", "attention", "decoder_input", "target_ids", "pieces", "roles", "encoder_length")


# --------------------------------------------------------------------------- rows
def decoder_io(target: Sequence[int], eos_id: int = EOS_ID) -> tuple[list[int], list[int]]:
    """``target`` without EOS (forced prefix + generated ids) -> (decoder_input, target_ids).

    ``decoder_input = [eos] + target``, ``target_ids = target + [eos]``.
    """
    ids = [int(t) for t in target]
    if eos_id in ids:
        raise ValueError(f"target must not contain EOS ({eos_id}): {ids}")
    return [eos_id, *ids], [*ids, eos_id]


def row_roles(
    target_ids: Sequence[int], lang_ids: Iterable[int], eos_id: int = EOS_ID, prompt_role: str = "lang"
) -> list[str]:
    """Role of each attention row, from the token it predicts (``target_ids[i]``).

    ``'eos'`` for EOS, ``prompt_role`` for an id in ``lang_ids`` (our language tags: ``'lang'``; the
    prompt tokens of an adapted Hugging Face model: ``'prompt'``), ``'token'`` otherwise.
    """
    langs = {int(t) for t in lang_ids}
    return [
        "eos" if t == eos_id else prompt_role if t in langs else "token" for t in (int(x) for x in target_ids)
    ]


def extract_cross_attention_batch(
    model: Any,
    features: Sequence[np.ndarray] | Tensor,
    decoder_inputs: Sequence[Sequence[int]],
    lengths: Sequence[int] | Tensor | None = None,
    batch_size: int | None = None,
) -> list[np.ndarray]:
    """Teacher-forced cross-attention of several utterances (batched, padding removed).

    Args:
        model: :class:`~caspes.model.S2TModel` (eval mode and inference mode for the call).
        features: list of (T_i, n_mels) arrays, or a padded (B, T, n_mels) tensor with ``lengths``.
        decoder_inputs: per utterance ``[EOS, <lang:xx>, y_1 .. y_n]`` (see the module docstring).
        lengths: (B,) valid frames when ``features`` is a tensor.
        batch_size: utterances per forward pass (None: all at once).

    Returns:
        Per utterance a float32 array (L_dec, H, I_i, T'_i); row ``i`` predicts ``target_ids[i]``.
    """
    if len(features) == 0:
        return []
    dims = model.dims
    device, dtype = model_device_dtype(model)
    feats, lens = as_batch(features, lengths, device, dtype)
    n = feats.size(0)
    if len(decoder_inputs) != n:
        raise ValueError(f"need one decoder input per utterance ({n}), got {len(decoder_inputs)}")
    if feats.size(-1) != dims.n_mels:
        raise ValueError(f"features have {feats.size(-1)} bins, the model expects {dims.n_mels}")
    decs = [check_decoder_input(d, dims) for d in decoder_inputs]
    step = batch_size or n
    out: list[np.ndarray] = []
    with eval_mode(model), torch.inference_mode():
        for start in range(0, n, step):
            chunk_lens = lens[start : start + step]
            chunk_decs = decs[start : start + step]
            t = int(chunk_lens.max())
            enc = model.encode(feats[start : start + step, :t], chunk_lens)
            width = max(len(d) for d in chunk_decs)
            dec = torch.full((len(chunk_decs), width), dims.pad_id, dtype=torch.long)
            for k, d in enumerate(chunk_decs):
                dec[k, : len(d)] = torch.tensor(d, dtype=torch.long)
            res = model.decode_teacher_forced(enc.states, enc.lengths, dec.to(device), return_attention=True)
            weights = res.cross_attention
            for k, (d, t_enc) in enumerate(zip(chunk_decs, enc.lengths.tolist())):
                w = weights[k, :, :, : len(d), :t_enc]
                out.append(w.to(device="cpu", dtype=torch.float32).numpy().copy())
    return out


def extract_cross_attention(
    model: Any, features: np.ndarray | Tensor, decoder_input: Sequence[int]
) -> np.ndarray:
    """Teacher-forced cross-attention of one utterance.

    Args:
        model: :class:`~caspes.model.S2TModel`.
        features: (T, n_mels) array or tensor.
        decoder_input: ``[EOS, <lang:xx>, y_1 .. y_n]``.

    Returns:
        float32 (L_dec, H, I, T') with ``I = len(decoder_input)`` and ``T'`` the utterance's
        encoder length; row ``i`` is the query at decoder input position ``i``, which predicts
        ``target_ids[i]`` (row 0: the language tag, last row: EOS).
    """
    if isinstance(features, Tensor):
        features = features.detach().cpu().numpy()
    return extract_cross_attention_batch(model, [np.asarray(features)], [decoder_input])[0]


# --------------------------------------------------------------------------- store
@dataclass
class CrossAttentionRecord:
    """One utterance of a :class:`CrossAttentionStore`.

    Attributes:
        id: utterance id.
        attention: float32 (L, H, I, T').
        decoder_input: I ids ``[EOS, <lang:xx>, y_1 .. y_n]``.
        target_ids: I ids ``[<lang:xx>, y_1 .. y_n, EOS]``; row ``i`` predicts ``target_ids[i]``.
        pieces: I pieces of ``target_ids``.
        roles: I row roles (:func:`row_roles`).
    """

    id: str
    attention: np.ndarray
    decoder_input: list[int]
    target_ids: list[int]
    pieces: list[str]
    roles: list[str]

    @property
    def encoder_length(self) -> int:
        """``T'``."""
        return int(self.attention.shape[-1])


def _validate(
    uid: str,
    attention: np.ndarray,
    decoder_input: Sequence[int],
    target_ids: Sequence[int],
    pieces: Sequence[str],
    roles: Sequence[str],
) -> None:
    check_uid(uid)
    if attention.ndim != 4:
        raise ValueError(f"{uid}: attention must be (L, H, I, T'), got shape {attention.shape}")
    i = attention.shape[2]
    sizes = {
        "decoder_input": len(decoder_input),
        "target_ids": len(target_ids),
        "pieces": len(pieces),
        "roles": len(roles),
    }
    if any(s != i for s in sizes.values()):
        raise ValueError(f"{uid}: attention has I={i} rows but {sizes}")
    if list(target_ids[:-1]) != list(decoder_input[1:]):
        raise ValueError(f"{uid}: target_ids must be decoder_input shifted left by one")
    bad = sorted(set(roles) - set(ROLES))
    if bad:
        raise ValueError(f"{uid}: unknown row roles {bad} (allowed {ROLES})")
    if any(not isinstance(p, str) for p in pieces):
        raise ValueError(f"{uid}: pieces must be strings")


class CrossAttentionStoreWriter(RecordArchiveWriter):
    """Write :class:`CrossAttentionRecord` s into a store file (format: module docstring).

    Use as a context manager; the file appears (atomically) when it is closed without error.
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, _FIELDS, kind="cross-attention store")

    def add(  # type: ignore[override]
        self,
        uid: str,
        attention: np.ndarray | Tensor,
        decoder_input: Sequence[int],
        target_ids: Sequence[int],
        pieces: Sequence[str],
        roles: Sequence[str],
    ) -> None:
        """Add one utterance (attention (L, H, I, T'), stored as float16)."""
        if isinstance(attention, Tensor):
            attention = attention.detach().cpu().numpy()
        attention = np.asarray(attention)
        _validate(uid, attention, decoder_input, target_ids, pieces, roles)
        super().add(
            uid,
            {
                "attention": attention.astype(np.float16),
                "decoder_input": np.asarray([int(t) for t in decoder_input], dtype=np.int32),
                "target_ids": np.asarray([int(t) for t in target_ids], dtype=np.int32),
                "pieces": np.array(list(pieces), dtype=np.str_).reshape(len(pieces)),
                "roles": np.array(list(roles), dtype=np.str_).reshape(len(roles)),
                "encoder_length": np.array(attention.shape[-1], dtype=np.int32),
            },
        )

    def add_record(self, record: CrossAttentionRecord) -> None:
        self.add(
            record.id, record.attention, record.decoder_input, record.target_ids, record.pieces, record.roles
        )


class CrossAttentionStore(RecordArchive):
    """Read a store file one utterance at a time: ``store[uid]``, ``store.ids`` (written order).

    A read-only mapping id -> :class:`CrossAttentionRecord`; usable as a context manager
    (:meth:`close` releases the file).
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, _FIELDS, kind="cross-attention store")

    def __getitem__(self, uid: str) -> CrossAttentionRecord:  # type: ignore[override]
        data = super().__getitem__(uid)
        attention = data["attention"].astype(np.float32)
        if int(data["encoder_length"]) != attention.shape[-1]:
            raise DataError(f"{self.path}: record '{uid}' is inconsistent")
        return CrossAttentionRecord(
            id=uid,
            attention=attention,
            decoder_input=data["decoder_input"].astype(np.int64).tolist(),
            target_ids=data["target_ids"].astype(np.int64).tolist(),
            pieces=[str(p) for p in data["pieces"]],
            roles=[str(r) for r in data["roles"]],
        )

    def __enter__(self) -> CrossAttentionStore:
        return self


# --------------------------------------------------------------------------- end to end
def write_cross_attention_store(
    path: str | Path,
    model: Any,
    tokenizer: Any,
    features: Mapping[str, np.ndarray] | Any,
    hypotheses: Iterable[Mapping[str, str]],
    batch_size: int = 8,
) -> int:
    """Extract and store the cross-attention of decoded hypotheses.

    Args:
        path: store file to write.
        model: :class:`~caspes.model.S2TModel`.
        tokenizer: :class:`~caspes.tokenizer.Tokenizer` (``sp.piece_to_id``, ``sp.id_to_piece``,
            ``langs``, ``lang_id``).
        features: anything with ``features[uid] -> (T, n_mels)`` (e.g. a
            :class:`~caspes.features.FeatureReader`, CMVN-normalised as for decoding).
        hypotheses: rows with ``id`` and ``pieces`` (space-separated pieces of the target without
            EOS, language tag first), as :func:`caspes.decode.run.decode_manifest` returns them.
        batch_size: utterances per teacher-forced pass.

    Returns:
        The number of utterances written (in the order of ``hypotheses``).
    """
    eos = model.dims.eos_id
    prompt_ids = tokenizer.prompt_token_ids()
    rows = list(hypotheses)
    count = 0
    with CrossAttentionStoreWriter(path) as writer:
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            ios = [decoder_io([tokenizer.piece_to_id(p) for p in r["pieces"].split()], eos) for r in chunk]
            feats = [np.asarray(features[r["id"]]) for r in chunk]
            weights = extract_cross_attention_batch(model, feats, [d for d, _ in ios])
            for r, (dec, tgt), w in zip(chunk, ios, weights):
                pieces = [tokenizer.id_to_piece(int(t)) for t in tgt]
                roles = row_roles(tgt, prompt_ids, eos, tokenizer.prompt_role)
                writer.add(r["id"], w, dec, tgt, pieces, roles)
                count += 1
    return count
