"""Explanation quality: deletion curves (re-decoding with more and more of the most salient input
removed).  ``spec/spes_reference.md`` §4 and §10.

Rankings (most important first; ties keep the lower index first, so runs are deterministic)
    * ``cell``: single (frame, bin) cells of a full-resolution (T, F) map (SM^X, Table 5);
    * ``frame``: whole input frames of a map on T' (pooled SM^X, cross-attention), upsampled to T
      by nearest neighbour (each T' value copied to its 4 frames, truncated to T);
    * ``encoder``: encoder output steps of SM^H.

    The sentence-level map is the mean over the target rows of the per-token normalised map
    (:func:`caspes.explain.maps.normalize_per_token`), all rows included as in the reference.

Steps
    ``k = 0 .. 100 / step`` (21 with the paper's 5%): at ``perc = k * step`` the
    ``floor(units * perc / 100)`` highest-ranked units are set to 0 (in the CMVN-normalised feature
    space, or whole encoder state vectors), then every utterance is re-decoded with the full beam
    search of the study.

Scores
    Corpus-level per step: ``wer_max`` for ASR (fairseq WER clipped at 100, cased, punctuation
    kept), BLEU for ST.  AUC = trapezoid over the percentage axis scaled to [0, 1], i.e. the
    reference script's number divided by 100 (the paper's scale: 0-100).  Deletion: a higher
    WER-AUC / lower BLEU-AUC means a better explanation.

The size (compactness) metric is in :mod:`caspes.explain.size`.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from tqdm import tqdm

from caspes.core.tsv import write_tsv
from caspes.decode.metrics import bleu, wer_max
from caspes.decode.options import split_decoding_settings
from caspes.decode.run import decode_batch, make_decode_batches
from caspes.decode.xattn import CrossAttentionStore
from caspes.explain.maps import Selection, mean_attention, normalize_per_token, pool_saliency
from caspes.explain.selection import select_ids
from caspes.explain.spes import occlusion_context
from caspes.explain.stores import SaliencyStore
from caspes.features import FeatureReader
from caspes.hf.loading import load_for_inference, load_tokenizer_for
from caspes.model.inference import resolve_device

__all__ = [
    "UNITS",
    "sentence_map",
    "upsample_frames",
    "ranking",
    "map_ranking",
    "DELETION_MAPS",
    "deletion_map_spec",
    "deletion_orders",
    "deletion_steps",
    "delete_units",
    "encoder_keep",
    "EncoderOcclusion",
    "auc",
    "DeletionResult",
    "deletion_curve",
    "read_hypotheses",
    "deletion_to_files",
]

log = logging.getLogger(__name__)

UNITS = ("cell", "frame", "encoder")


# --------------------------------------------------------------------------- rankings
def sentence_map(normalized: np.ndarray, rows: Sequence[bool] | None = None) -> np.ndarray:
    """Mean over token rows (axis 0) of a per-token normalised map; ``rows`` selects rows."""
    x = np.asarray(normalized, dtype=np.float64)
    if rows is not None:
        sel = np.asarray(rows, dtype=bool)
        if sel.shape != (x.shape[0],) or not sel.any():
            raise ValueError(f"rows must select at least one of the {x.shape[0]} rows")
        x = x[sel]
    return x.mean(axis=0)


def upsample_frames(values: np.ndarray, frames: int, factor: int = 4) -> np.ndarray:
    """Nearest-neighbour T' -> T: each value copied to its ``factor`` frames, truncated to ``frames``."""
    v = np.asarray(values)
    if v.ndim != 1 or math.ceil(frames / factor) != v.shape[0]:
        raise ValueError(f"a map on T'={v.shape} does not match T={frames} (T' must be ceil(T/{factor}))")
    return np.repeat(v, factor)[:frames]


def ranking(values: np.ndarray) -> np.ndarray:
    """Indices of the flattened ``values`` from most to least important (stable on ties)."""
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    return np.argsort(-flat, kind="stable")


def map_ranking(saliency: np.ndarray, unit: str, frames: int, factor: int = 4) -> np.ndarray:
    """Ranking of one utterance's raw saliency map for a deletion ``unit``.

    ``cell``: (I, T, F) map -> T*F cells; ``frame``: (I, T') map -> T frames (nearest-neighbour
    upsampling by the model's subsampling ``factor``); ``encoder``: (I, T') map -> T' steps.  The map is normalised per token
    (:func:`caspes.explain.maps.normalize_per_token`) and averaged over all rows first.
    """

    sentence = sentence_map(normalize_per_token(saliency))
    if unit == "cell":
        if sentence.ndim != 2 or sentence.shape[0] != frames:
            raise ValueError(
                f"cell deletion needs an (I, T, F) map with T={frames}, got {np.shape(saliency)}"
            )
        return ranking(sentence)
    if sentence.ndim != 1:
        raise ValueError(f"{unit} deletion needs an (I, T') map, got {np.shape(saliency)}")
    if unit == "frame":
        return ranking(upsample_frames(sentence, frames, factor))
    if unit == "encoder":
        return ranking(sentence)
    raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")


#: Maps a deletion curve can be drawn for: name -> (source store, deletion unit).
DELETION_MAPS: dict[str, tuple[str, str]] = {
    "smx": ("saliency", "cell"),
    "smx-max2d": ("saliency", "frame"),
    "smx-avg2d": ("saliency", "frame"),
    "smx-max1d_avg1d": ("saliency", "frame"),
    "ca": ("xattn", "frame"),
}


def deletion_map_spec(name: str) -> tuple[str, str]:
    """(source, unit) of a deletion map name: ``smx`` (cells), ``smx-<pooling>`` (frames of SM^X
    pooled to T'), ``ca`` (frames of the all-layer, all-head cross-attention), ``smh-p<p>``
    (encoder steps)."""
    if name in DELETION_MAPS:
        return DELETION_MAPS[name]
    if name.startswith("smh-p"):
        return "saliency", "encoder"
    raise ValueError(f"unknown deletion map {name!r} (known: {sorted(DELETION_MAPS)} and smh-p<p>)")


def deletion_orders(
    name: str,
    store_path: str | Any,
    frames: Mapping[str, int],
    ids: Sequence[str] | None = None,
    factor: int = 4,
) -> dict[str, np.ndarray]:
    """Ranking of every utterance of a store for the deletion map ``name``.

    Args:
        name: see :func:`deletion_map_spec`.
        store_path: the saliency store (``smx*``, ``smh-p*``) or cross-attention store (``ca``).
        frames: input frames ``T`` per utterance id.
        ids: only these utterances (default: all of the store), e.g. the explained ones.
        factor: input frames per encoder step of the model (ours 4, Whisper 2).
    """

    source, unit = deletion_map_spec(name)
    orders: dict[str, np.ndarray] = {}
    if source == "xattn":
        with CrossAttentionStore(store_path) as store:
            for uid in store.ids if ids is None else ids:
                att = store[uid].attention
                everything = Selection("avg", "avg").pairs(*att.shape[:2])
                orders[uid] = map_ranking(mean_attention(att, everything), unit, frames[uid], factor)
        return orders
    pooling = name.split("-", 1)[1] if name.startswith("smx-") else None
    with SaliencyStore(store_path) as store:
        for uid in store.ids if ids is None else ids:
            sal = store[uid].saliency
            pooled = pool_saliency(sal, pooling, factor) if pooling else sal
            orders[uid] = map_ranking(pooled, unit, frames[uid], factor)
    return orders


def deletion_steps(step_percent: float = 5.0, max_percent: float = 100.0) -> list[float]:
    """Percentages 0, step, .., max (21 points for the paper's 5 / 100)."""
    if step_percent <= 0 or max_percent <= 0 or max_percent > 100:
        raise ValueError("step_percent must be > 0 and max_percent in (0, 100]")
    n = int(round(max_percent / step_percent))
    if not math.isclose(n * step_percent, max_percent):
        raise ValueError(f"max_percent {max_percent} is not a multiple of step_percent {step_percent}")
    return [k * step_percent for k in range(n + 1)]


def delete_units(
    features: np.ndarray, order: np.ndarray, unit: str, percent: float, fill: np.ndarray | None = None
) -> np.ndarray:
    """Copy of the (T, F) ``features`` with the ``floor(units * percent / 100)`` first units of
    ``order`` zeroed (``cell``: cells of T*F, ``frame``: frames), or set to the per-bin ``fill``
    (F,) (an adapted model's per-bin mean).  ``encoder`` deletion happens on encoder states: see
    :class:`EncoderOcclusion` and :func:`encoder_keep`."""
    x = np.array(features, dtype=np.float32, copy=True)
    t, f = x.shape
    full = (
        np.zeros((t, f), dtype=np.float32)
        if fill is None
        else np.broadcast_to(np.asarray(fill, np.float32), (t, f))
    )
    if unit == "cell":
        n = math.floor(t * f * percent / 100)
        if order.shape != (t * f,):
            raise ValueError(f"a cell ranking needs {t * f} entries, got {order.shape}")
        x.reshape(-1)[order[:n]] = full.reshape(-1)[order[:n]]
    elif unit == "frame":
        n = math.floor(t * percent / 100)
        if order.shape != (t,):
            raise ValueError(f"a frame ranking needs {t} entries, got {order.shape}")
        x[order[:n]] = full[order[:n]]
    else:
        raise ValueError(f"unit must be 'cell' or 'frame' here, got {unit!r}")
    return x


def encoder_keep(order: np.ndarray, percent: float) -> np.ndarray:
    """bool (T',) keep mask with the ``floor(T' * percent / 100)`` first steps of ``order`` removed."""
    keep = np.ones(order.shape[0], dtype=bool)
    keep[order[: math.floor(order.shape[0] * percent / 100)]] = False
    return keep


class EncoderOcclusion(nn.Module):
    """A model whose encoder outputs are multiplied by per-utterance keep masks (for beam search).

    ``set_masks`` takes one bool (T'_b,) mask per utterance of the *next* batch, in batch order.
    Everything else is delegated to the wrapped model.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self._masks: list[np.ndarray] | None = None

    @property
    def dims(self) -> Any:
        return self.model.dims

    def set_masks(self, masks: Sequence[np.ndarray]) -> None:
        self._masks = [np.asarray(m, dtype=bool) for m in masks]

    def encode(self, features: Tensor, lengths: Tensor) -> Any:
        enc = self.model.encode(features, lengths)
        if self._masks is None or len(self._masks) != enc.states.size(0):
            raise RuntimeError("EncoderOcclusion.set_masks must give one mask per utterance of the batch")
        # Steps beyond an utterance's length are kept as they are: 0 and masked for our models, the
        # fixed-window padding an adapted Whisper's decoder attends to (caspes.hf.adapter).
        keep = torch.ones(enc.states.shape[:2], dtype=enc.states.dtype, device=enc.states.device)
        for b, (m, t) in enumerate(zip(self._masks, enc.lengths.tolist())):
            if m.shape != (t,):
                raise ValueError(f"encoder mask {b} has {m.shape[0]} steps, the utterance has T'={t}")
            keep[b, :t] = torch.as_tensor(m, dtype=enc.states.dtype, device=enc.states.device)
        return replace(enc, states=enc.states * keep.unsqueeze(-1))

    def decode_step(self, *args: Any, **kwargs: Any) -> Any:
        return self.model.decode_step(*args, **kwargs)

    def decode_teacher_forced(self, *args: Any, **kwargs: Any) -> Any:
        return self.model.decode_teacher_forced(*args, **kwargs)


# --------------------------------------------------------------------------- curves
def auc(scores: Sequence[float], percents: Sequence[float]) -> float:
    """Trapezoid area of ``scores`` over ``percents`` / 100 (the paper's scale)."""
    s = np.asarray(scores, dtype=np.float64)
    x = np.asarray(percents, dtype=np.float64) / 100.0
    if s.shape != x.shape or s.size < 2:
        raise ValueError("need matching score and percent sequences of at least 2 points")
    return float(np.sum((s[1:] + s[:-1]) * np.diff(x)) / 2.0)


@dataclass
class DeletionResult:
    """A deletion curve: per step the corpus score; the AUC; the hypotheses per step."""

    unit: str
    metric: str
    percents: list[float]
    scores: list[float]
    auc: float
    hypotheses: list[dict[str, str]]


def deletion_curve(
    model: Any,
    tokenizer: Any,
    features: Mapping[str, np.ndarray] | Any,
    utterances: Sequence[Mapping[str, str]],
    orders: Mapping[str, np.ndarray],
    unit: str,
    task: str,
    options: Any,
    step_percent: float = 5.0,
    batch_frames: int = 20000,
    progress: bool = False,
) -> DeletionResult:
    """Deletion curve of one explanation over a set of utterances.

    Args:
        model: :class:`~caspes.model.S2TModel`.
        tokenizer: its :class:`~caspes.tokenizer.Tokenizer`.
        features: ``features[uid]`` -> CMVN-normalised (T, F) (e.g. a FeatureReader).
        utterances: rows with ``id``, ``reference`` and ``pieces`` (as in ``hyps.tsv``; the first
            piece is the forced language tag).
        orders: per utterance id the ranking (:func:`ranking`) over its units.
        unit: ``"cell"``, ``"frame"`` or ``"encoder"``.
        task: ``"asr"`` (wer_max) or ``"st"`` (BLEU).
        options: :class:`~caspes.decode.options.DecodingOptions` of the study (beam 5, no-repeat 5).
        step_percent: deletion step (paper 5).
        batch_frames: decoding batch bound (utterances x frames).

    Returns:
        :class:`DeletionResult`.
    """

    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    if task not in ("asr", "st"):
        raise ValueError(f"task must be 'asr' or 'st', got {task!r}")
    rows = list(utterances)
    missing = [r["id"] for r in rows if r["id"] not in orders]
    if missing:
        raise ValueError(f"no ranking for utterances {missing[:5]}")
    prefixes = []
    for r in rows:
        pieces = r["pieces"].split()
        n_prompt = tokenizer.split_prompt(pieces, where=r["id"])
        prefixes.append([tokenizer.piece_to_id(p) for p in pieces[:n_prompt]])
    feats = {r["id"]: np.asarray(features[r["id"]]) for r in rows}
    n_frames = [feats[r["id"]].shape[0] for r in rows]
    # An adapted model occludes with its features' per-bin mean and pads each deleted copy as the
    # clean input (caspes.explain.spes.occlusion_context): one utterance per batch.
    clean = {uid: torch.from_numpy(x) for uid, x in feats.items()}
    fills = {uid: occlusion_context(model, x)[0] for uid, x in clean.items()}
    fills = {uid: None if fill is None else fill.numpy() for uid, fill in fills.items()}
    per_utterance = any(fill is not None for fill in fills.values())
    batches = (
        [[i] for i in range(len(rows))]
        if per_utterance
        else make_decode_batches(n_frames, batch_frames, options.batch_size)
    )
    runner = EncoderOcclusion(model) if unit == "encoder" else model
    percents = deletion_steps(step_percent)
    scores: list[float] = []
    hyp_rows: list[dict[str, str]] = []
    for perc in tqdm(percents, desc=f"deletion ({unit})", disable=not progress, mininterval=5):
        hyps: list[str] = [""] * len(rows)
        for batch in batches:
            if unit == "encoder":
                inputs = [feats[rows[i]["id"]] for i in batch]
                runner.set_masks([encoder_keep(orders[rows[i]["id"]], perc) for i in batch])
                opts = replace(options, batch_size=None)  # the masks follow the batch order
            else:
                inputs = [
                    delete_units(
                        feats[rows[i]["id"]], orders[rows[i]["id"]], unit, perc, fills[rows[i]["id"]]
                    )
                    for i in batch
                ]
                opts = options
            # a fresh context per batch (a context manager is entered once)
            context = occlusion_context(model, clean[rows[batch[0]]["id"]])[1] if per_utterance else None
            with context or contextlib.nullcontext():
                out = decode_batch(runner, inputs, [prefixes[i] for i in batch], opts)
            for i, ids in zip(batch, out):
                hyps[i] = tokenizer.decode(ids)
        refs = [r["reference"] for r in rows]
        score = wer_max(hyps, refs) if task == "asr" else bleu(hyps, refs)
        scores.append(score)
        log.info("deletion %s %.0f%%: %s %.2f", unit, perc, "wer_max" if task == "asr" else "BLEU", score)
        hyp_rows.extend({"percent": f"{perc:g}", "id": r["id"], "hypothesis": h} for r, h in zip(rows, hyps))
    return DeletionResult(
        unit=unit,
        metric="wer_max" if task == "asr" else "bleu",
        percents=percents,
        scores=scores,
        auc=auc(scores, percents),
        hypotheses=hyp_rows,
    )


def read_hypotheses(path: str | Path) -> pd.DataFrame:
    """The decode stage's ``hyps.tsv`` as strings, empty fields staying empty. Quoting as
    :func:`caspes.core.tsv.write_tsv` writes it (pandas' minimal quoting: a field holding a quote
    character, as a byte-level BPE hypothesis may, is quoted there and unquoted here)."""
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def deletion_to_files(
    map_name: str,
    checkpoint: str | Path,
    tokenizer_path: str | Path,
    manifest: str | Path,
    hyps_path: str | Path,
    map_paths: Sequence[str | Path],
    task: str,
    decoding: Mapping[str, Any],
    settings: Mapping[str, Any],
    max_utterances: int | None,
    curve_path: str | Path,
    deleted_hyps_path: str | Path,
    device: str = "cpu",
) -> DeletionResult:
    """Deletion curve of explanation ``map_name`` (:data:`DELETION_MAPS`) over the explained
    utterances of one decoded split, re-decoded with the config's ``decoding`` settings.

    ``settings``: the config's ``explain.deletion`` block (``step_percent``, ``batch_frames``).
    Writes ``curve_path`` (unit, metric, percent, score, AUC, utterances) and the hypotheses at
    every step to ``deleted_hyps_path``.
    """
    options, _ = split_decoding_settings(decoding)
    model, own_tokenizer = load_for_inference(checkpoint, resolve_device(device))
    reader = FeatureReader(manifest)
    frames = {r["id"]: int(r["n_frames"]) for r in reader.rows}
    hyps = read_hypotheses(hyps_path)
    ids = select_ids(list(hyps["id"]), max_utterances)  # the explained utterances, in manifest order
    factor = int(getattr(model.dims, "subsampling", 4))  # ours: 4 (ModelDimensions has no field)
    orders = deletion_orders(map_name, map_paths, frames, ids, factor)
    rows = [r for r in hyps.to_dict("records") if r["id"] in orders]
    res = deletion_curve(
        model, load_tokenizer_for(tokenizer_path, own_tokenizer), reader, rows, orders, deletion_map_spec(map_name)[1], task,
        options, settings["step_percent"], settings["batch_frames"], progress=True,
    )  # fmt: skip
    curve = pd.DataFrame({"percent": res.percents, "score": res.scores})
    curve.insert(0, "metric", res.metric)
    curve.insert(0, "unit", res.unit)
    curve["auc"] = round(res.auc, 4)
    curve["utterances"] = len(rows)
    write_tsv(curve_path, curve)
    write_tsv(deleted_hyps_path, res.hypotheses)
    log.info("%s deletion AUC (%s) = %.2f over %d utterances", res.unit, res.metric, res.auc, len(rows))
    return res
