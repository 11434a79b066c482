"""Training data: utterances, targets, length-sorted frame-budget batches, collation.

Batching: the kept utterances, sorted by length (ties in an order drawn from the seed), are
cut into consecutive batches whose size times longest input stays within
``max_frames_per_batch`` (a longer utterance makes a batch of its own); every epoch visits
the batches in its own order, drawn from ``(seed, epoch)``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from caspes.core.batching import pack_by_frames
from caspes.core.manifest import DataError, Skip
from caspes.features import FeatureReader
from caspes.model import subsampled_lengths
from caspes.tokenizer import EOS_ID, PAD_ID, Tokenizer
from caspes.train.config import TrainConfig

__all__ = ["build_target", "ctc_min_frames", "Batch", "TrainingData"]

log = logging.getLogger(__name__)


# =========================================================================== data
def build_target(tag_id: int, pieces: Sequence[int]) -> tuple[list[int], list[int]]:
    """fairseq decoder input and output for a tagged target.

    ``target = [tag] + pieces``; returns ``([EOS] + target, target + [EOS])``.
    """
    target = [int(tag_id), *map(int, pieces)]
    return [EOS_ID, *target], [*target, EOS_ID]


def ctc_min_frames(ids: Sequence[int]) -> int:
    """Fewest CTC frames that can emit ``ids``: one per label plus a blank between repeats."""
    return len(ids) + sum(1 for a, b in zip(ids, ids[1:], strict=False) if a == b)


@dataclass(frozen=True)
class _Utterance:
    source: int  # index of the (reader, tokenizer) pair
    uid: str
    where: str  # manifest file:line
    n_frames: int
    encoder_frames: int
    src_tag: int
    src_ids: tuple[int, ...]
    tgt_tag: int | None
    tgt_ids: tuple[int, ...] | None


@dataclass
class Batch:
    """A collated batch (CPU tensors until :meth:`to`).

    Attributes:
        ids: utterance ids.
        features: (B, T, n_mels) float32, CMVN-normalised, zero-padded.
        lengths: (B,) long valid frames.
        decoder_input: (B, I) long ``[EOS, tag, pieces...]``, PAD-padded.
        target: (B, I) long ``[tag, pieces..., EOS]``, PAD-padded.
        ctc_src_targets / ctc_src_lengths: (B, S) / (B,) transcript pieces.
        ctc_tgt_targets / ctc_tgt_lengths: (B, S') / (B,) pieces of this sample's target text.
        is_st: (B,) bool, True for translation samples.
    """

    ids: list[str]
    features: Tensor
    lengths: Tensor
    decoder_input: Tensor
    target: Tensor
    ctc_src_targets: Tensor
    ctc_src_lengths: Tensor
    ctc_tgt_targets: Tensor
    ctc_tgt_lengths: Tensor
    is_st: Tensor

    def __len__(self) -> int:
        return len(self.ids)

    def to(self, device: torch.device) -> Batch:
        fields = {
            f.name: (
                getattr(self, f.name).to(device)
                if isinstance(getattr(self, f.name), Tensor)
                else getattr(self, f.name)
            )
            for f in dataclasses.fields(self)
        }
        return Batch(**fields)


def _pad_2d(rows: Sequence[Sequence[int]], pad: int, min_width: int = 1) -> tuple[Tensor, Tensor]:
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    width = max(min_width, int(lengths.max().item()) if len(rows) else 0)
    out = torch.full((len(rows), width), pad, dtype=torch.long)
    for i, r in enumerate(rows):
        if len(r):
            out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out, lengths


def _shared_tokenizer_bytes(sources: Sequence[tuple[FeatureReader, Tokenizer]]) -> bytes:
    """The tokenizer model of the sources; ValueError unless all are the same bytes."""
    first = sources[0][1]
    model = Path(first.path).read_bytes()
    for _, tok in sources[1:]:
        if Path(tok.path).read_bytes() != model:
            raise ValueError(f"all sources must share one tokenizer: {tok.path} differs from {first.path}")
    return model


def _n_frames(row: dict[str, str], where: str) -> int:
    """``n_frames`` of a manifest row; DataError if a column training needs is missing."""
    for col in ("n_frames", "src_text", "src_lang"):
        if col not in row:
            raise DataError(f"{where}: training needs column '{col}'")
    try:
        return int(row["n_frames"])
    except ValueError:
        raise DataError(f"{where}: n_frames is not an integer: {row['n_frames']!r}") from None


def _count_ctc_unalignable(utterances: Sequence[_Utterance]) -> dict[str, int]:
    """``{"transcript": n, "translation": n}``: utterances whose pieces need more CTC frames
    than their encoder output has."""
    return {
        "transcript": sum(ctc_min_frames(u.src_ids) > u.encoder_frames for u in utterances),
        "translation": sum(
            u.tgt_ids is not None and ctc_min_frames(u.tgt_ids) > u.encoder_frames for u in utterances
        ),
    }


class TrainingData:
    """Utterances of one or more feature manifests, tokenised, filtered and bucketed.

    Args:
        sources: ``(FeatureReader, Tokenizer)`` pairs; all tokenizers must be the same
            model (identical bytes), e.g. the ``en_it`` tokenizer for both the ``en`` and
            the ``it`` manifest of a multilingual model.
        max_frames_per_batch: bound on ``batch size * longest input`` (see module doc).
        max_duration_frames: skip longer utterances (reason ``too_long``); None: keep all.
        seed: seed of the length-tie shuffle, the per-epoch batch order and the ST draws.
        need_translation: skip utterances without a usable translation (reason
            ``no_translation``: empty ``tgt_text`` or a target language the tokenizer has
            no tag for).  Needed for stage ``asr_st``.
        max_target_positions: skip utterances whose decoder input (``2 + pieces``) would
            be longer (reason ``target_too_long``); None: no bound.
        cache: keep every loaded feature matrix in memory (fine for small corpora);
            otherwise features are read from the archive one utterance at a time.
        name: label used in log messages.

    Attributes:
        skips: one :class:`~caspes.io.Skip` per skipped utterance (with manifest line).
        skipped: ``{reason: count}``.
        ctc_unalignable: ``{"transcript": n, "translation": n}``: kept utterances whose
            transcript / translation pieces need more CTC frames than the encoder produces
            (their CTC loss is zeroed by ``zero_infinity``).
        batches: the length-bucketed batches (lists of utterance indices), unshuffled.
    """

    def __init__(
        self,
        sources: Sequence[tuple[FeatureReader, Tokenizer]],
        *,
        max_frames_per_batch: int,
        max_duration_frames: int | None = None,
        seed: int = 1,
        need_translation: bool = False,
        max_target_positions: int | None = None,
        cache: bool = False,
        name: str = "train",
    ) -> None:
        if not sources:
            raise ValueError("TrainingData needs at least one (FeatureReader, Tokenizer) source")
        if max_frames_per_batch < 1:
            raise ValueError(f"max_frames_per_batch must be >= 1, got {max_frames_per_batch}")
        self.name = name
        self.readers = [reader for reader, _ in sources]
        self.tokenizer: Tokenizer = sources[0][1]
        self.tokenizer_bytes = _shared_tokenizer_bytes(sources)
        self.max_frames_per_batch = int(max_frames_per_batch)
        self.max_duration_frames = max_duration_frames
        self.seed = int(seed)
        self.need_translation = need_translation
        self.cache = cache
        self._cache: dict[int, np.ndarray] = {}
        self.n_mels: int | None = None

        self.utterances: list[_Utterance] = []
        self.skips: list[Skip] = []
        self._read_manifests(max_target_positions)
        if not self.utterances:
            raise DataError(f"{name}: no utterance left after filtering (skipped: {dict(self.skipped)})")
        self.n_frames = np.array([u.n_frames for u in self.utterances], dtype=np.int64)
        self._add_encoder_frames()
        self.ctc_unalignable = _count_ctc_unalignable(self.utterances)
        self.batches = self._make_batches()
        self.log_summary()

    # ------------------------------------------------------------------ reading
    def _read_manifests(self, max_target_positions: int | None) -> None:
        """Tokenise and filter the rows of every manifest into ``utterances`` and ``skips``."""
        for source, reader in enumerate(self.readers):
            for row in reader.rows:
                where = f"{reader.path}:{row.get('_line', '?')}"
                item = self._read_row(row, source, where, max_target_positions)
                if isinstance(item, Skip):
                    self.skips.append(item)
                else:
                    self.utterances.append(item)

    def _read_row(
        self, row: dict[str, str], source: int, where: str, max_target_positions: int | None
    ) -> _Utterance | Skip:
        """The utterance of one manifest row (``encoder_frames`` still 0), or why it is
        skipped; DataError for a row training cannot use at all."""
        tok = self.tokenizer
        uid = row["id"]
        n_frames = _n_frames(row, where)
        if n_frames < 1:
            return Skip(uid, where, "no_frames", f"n_frames={n_frames}")
        if self.max_duration_frames is not None and n_frames > self.max_duration_frames:
            return Skip(uid, where, "too_long", f"{n_frames} > {self.max_duration_frames} frames")
        src_lang = row["src_lang"]
        if src_lang not in tok.langs:
            raise DataError(f"{where}: tokenizer {tok.path} has no tag for source language '{src_lang}'")
        src_text = row["src_text"].strip()
        if not src_text:
            return Skip(uid, where, "empty_transcript")
        src_ids = tuple(tok.encode(src_text))
        tgt_lang = row.get("tgt_lang", "")
        tgt_text = row.get("tgt_text", "").strip()
        tgt_tag: int | None = None
        tgt_ids: tuple[int, ...] | None = None
        if tgt_text and tgt_lang in tok.langs:
            tgt_tag, tgt_ids = tok.lang_id(tgt_lang), tuple(tok.encode(tgt_text))
        elif self.need_translation:
            why = "empty tgt_text" if not tgt_text else f"no tag for target language '{tgt_lang}'"
            return Skip(uid, where, "no_translation", why)
        if max_target_positions is not None:
            longest = max(len(src_ids), len(tgt_ids) if (self.need_translation and tgt_ids) else 0)
            if longest + 2 > max_target_positions:
                return Skip(
                    uid, where, "target_too_long", f"{longest + 2} > {max_target_positions} positions"
                )
        return _Utterance(
            source=source,
            uid=uid,
            where=where,
            n_frames=n_frames,
            encoder_frames=0,
            src_tag=tok.lang_id(src_lang),
            src_ids=src_ids,
            tgt_tag=tgt_tag,
            tgt_ids=tgt_ids,
        )

    def _add_encoder_frames(self) -> None:
        """Set each utterance's ``encoder_frames`` (its length after the subsampling)."""
        enc = subsampled_lengths(torch.from_numpy(self.n_frames)).tolist()
        self.utterances = [
            dataclasses.replace(u, encoder_frames=int(t)) for u, t in zip(self.utterances, enc, strict=True)
        ]

    @classmethod
    def from_config(
        cls,
        sources: Sequence[tuple[FeatureReader, Tokenizer]],
        config: TrainConfig,
        *,
        max_target_positions: int | None = None,
        cache: bool = False,
        name: str = "train",
    ) -> TrainingData:
        """Batching, filtering and seed from ``config`` (translations needed in stage asr_st)."""
        return cls(
            sources,
            max_frames_per_batch=config.max_frames_per_batch,
            max_duration_frames=config.max_duration_frames,
            seed=config.seed,
            need_translation=config.effective_st_probability > 0,
            max_target_positions=max_target_positions,
            cache=cache,
            name=name,
        )

    # ------------------------------------------------------------------ summary
    def __len__(self) -> int:
        return len(self.utterances)

    @property
    def skipped(self) -> Counter:
        """``{reason: count}`` of the skipped utterances."""
        return Counter(s.reason for s in self.skips)

    @property
    def max_decoder_input_length(self) -> int:
        """Longest decoder input (``2 + pieces``) over ASR and available ST targets."""
        return 2 + max(
            max(len(u.src_ids), len(u.tgt_ids) if u.tgt_ids is not None else 0) for u in self.utterances
        )

    def log_summary(self) -> None:
        """Log utterances, skipped counts with reasons, batches, CTC-unalignable counts."""
        total = len(self.utterances) + len(self.skips)
        log.info(
            "%s: %d of %d utterances kept (%d frames, %.2f h) in %d batches of <= %d padded frames",
            self.name,
            len(self.utterances),
            total,
            int(self.n_frames.sum()),
            float(self.n_frames.sum()) / 360000.0,
            len(self.batches),
            self.max_frames_per_batch,
        )
        if self.skips:
            log.warning(
                "%s: skipped %d utterances: %s",
                self.name,
                len(self.skips),
                ", ".join(f"{reason} {n}" for reason, n in sorted(self.skipped.items())),
            )
            for s in self.skips[:5]:
                log.info("%s: skipped %s (%s): %s %s", self.name, s.id, s.source, s.reason, s.detail)
        if any(self.ctc_unalignable.values()):
            log.warning(
                "%s: utterances whose CTC target is longer than the encoder output (loss zeroed): %s",
                self.name,
                self.ctc_unalignable,
            )

    # ------------------------------------------------------------------ batching
    def _make_batches(self) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, 0x5EED])
        order = rng.permutation(len(self.utterances))
        order = order[np.argsort(self.n_frames[order], kind="stable")]
        return pack_by_frames(order.tolist(), self.n_frames, self.max_frames_per_batch)

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """The batches in the order of ``epoch`` (a permutation drawn from ``(seed, epoch)``)."""
        rng = np.random.default_rng([self.seed, int(epoch), 0])
        return [self.batches[i] for i in rng.permutation(len(self.batches)).tolist()]

    def st_choices(self, epoch: int, st_probability: float) -> np.ndarray:
        """(N,) bool: which utterances are ST samples in ``epoch`` (drawn from ``(seed, epoch)``)."""
        u = np.random.default_rng([self.seed, int(epoch), 1]).random(len(self.utterances))
        return u < st_probability

    # ------------------------------------------------------------------ items
    def features(self, index: int) -> np.ndarray:
        """CMVN-normalised (T, n_mels) float32 features of utterance ``index``."""
        if index in self._cache:
            return self._cache[index]
        utt = self.utterances[index]
        feats = np.asarray(self.readers[utt.source][utt.uid], dtype=np.float32)
        if feats.ndim != 2 or feats.shape[0] != utt.n_frames:
            raise DataError(
                f"{utt.where}: features of '{utt.uid}' have shape {feats.shape}, manifest says {utt.n_frames} frames"
            )
        if self.n_mels is None:
            self.n_mels = int(feats.shape[1])
        elif feats.shape[1] != self.n_mels:
            raise DataError(f"{utt.where}: {feats.shape[1]} feature bins, others have {self.n_mels}")
        if self.cache:
            self._cache[index] = feats
        return feats

    def target(self, index: int, st: bool) -> tuple[int, tuple[int, ...]]:
        """``(tag id, pieces)`` of the ASR (``st=False``) or ST target of utterance ``index``."""
        utt = self.utterances[index]
        if not st:
            return utt.src_tag, utt.src_ids
        if utt.tgt_ids is None or utt.tgt_tag is None:
            raise DataError(f"{utt.where}: '{utt.uid}' has no usable translation for an ST sample")
        return utt.tgt_tag, utt.tgt_ids

    def collate(self, indices: Sequence[int], is_st: Sequence[bool] | None = None) -> Batch:
        """Pad features and targets of ``indices``; ``is_st`` (default all False) picks the task."""
        indices = [int(i) for i in indices]
        if is_st is None:
            is_st = [False] * len(indices)
        is_st = [bool(s) for s in is_st]
        if len(is_st) != len(indices):
            raise ValueError("is_st must have one entry per index")
        feats = [self.features(i) for i in indices]
        lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.long)
        features = torch.zeros(len(feats), int(lengths.max().item()), feats[0].shape[1], dtype=torch.float32)
        for k, f in enumerate(feats):
            features[k, : f.shape[0]] = torch.from_numpy(f)
        dec_in, out, ctc_tgt = [], [], []
        for i, st in zip(indices, is_st, strict=True):
            tag, pieces = self.target(i, st)
            a, b = build_target(tag, pieces)
            dec_in.append(a)
            out.append(b)
            ctc_tgt.append(pieces)
        decoder_input, _ = _pad_2d(dec_in, PAD_ID)
        target, _ = _pad_2d(out, PAD_ID)
        ctc_src_targets, ctc_src_lengths = _pad_2d([self.utterances[i].src_ids for i in indices], PAD_ID)
        ctc_tgt_targets, ctc_tgt_lengths = _pad_2d(ctc_tgt, PAD_ID)
        return Batch(
            ids=[self.utterances[i].uid for i in indices],
            features=features,
            lengths=lengths,
            decoder_input=decoder_input,
            target=target,
            ctc_src_targets=ctc_src_targets,
            ctc_src_lengths=ctc_src_lengths,
            ctc_tgt_targets=ctc_tgt_targets,
            ctc_tgt_lengths=ctc_tgt_lengths,
            is_st=torch.tensor(is_st, dtype=torch.bool),
        )
