"""Unit tests for caspes.explain.stores and caspes.explain.shards (saliency stores, shard selection, gathering, sharded runs)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tinymodels import one_thread, tiny_model  # noqa: F401 - one_thread is a fixture

from caspes.core.manifest import DataError, write_manifest
from caspes.core.zipstore import RecordArchive, RecordArchiveWriter
from caspes.decode.xattn import CrossAttentionStoreWriter, decoder_io, row_roles
from caspes.explain import shards as shards_module
from caspes.explain.resume import inputs_digest, partial_root, run_key
from caspes.explain.segment import SegmentationOptions, SegmentationStore, write_segmentations
from caspes.explain.selection import select_ids, shard_ids
from caspes.explain.shards import explain_shard, gather_shards
from caspes.explain.spes import OcclusionOptions, explain_encoder, explain_input
from caspes.explain.stores import SaliencyRecord, SaliencyStore, SaliencyStoreWriter
from caspes.features import FbankOptions, FeatureReader, extract_split
from caspes.model.checkpoint import load_model, save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

EOS = 2
LANG = 4


def _record(uid: str, kind: str = "input", rows: int = 4, shape=(10, 6), seed: int = 0) -> SaliencyRecord:
    rng = np.random.default_rng(seed)
    dec, tgt = decoder_io([LANG, *range(5, 5 + rows - 2)])
    assert len(tgt) == rows
    sal = rng.gamma(2.0, 1.0, size=(rows, *shape)).astype(np.float32)
    sal[0] *= 1e-4  # rows of very different magnitudes
    sal[1] *= 30.0
    sal[2] = 0.0  # an all-zero row
    return SaliencyRecord(
        id=uid,
        saliency=sal,
        counts=rng.integers(0, 50, size=shape),
        decoder_input=dec,
        target_ids=tgt,
        pieces=["<lang:it>", *[f"▁p{k}" for k in range(rows - 2)], "</s>"],
        roles=row_roles(tgt, [LANG]),
        kind=kind,
        n_masks=60,
        p=0.5 if kind == "input" else 0.7,
        seed=3,
    )


def _check_same(got: SaliencyRecord, want: SaliencyRecord) -> None:
    assert got.id == want.id
    assert got.saliency.dtype == np.float32 and got.saliency.shape == want.saliency.shape
    row_max = want.saliency.reshape(want.saliency.shape[0], -1).max(axis=1)
    err = np.abs(got.saliency - want.saliency).reshape(want.saliency.shape[0], -1).max(axis=1)
    assert (err <= 1e-3 * row_max).all(), (err, row_max)  # float16 of the row-scaled map
    np.testing.assert_array_equal(got.counts, want.counts)
    assert got.counts.dtype == np.int64
    for name in ("decoder_input", "target_ids", "pieces", "roles", "kind", "n_masks", "p", "seed"):
        assert getattr(got, name) == getattr(want, name), name


# --------------------------------------------------------------------------- store
def test_store_round_trip(tmp_path: Path) -> None:
    records = [
        _record("u2", "input", 4, (10, 6), seed=1),
        _record("u0", "encoder", 5, (7,), seed=2),
        _record("u1", "input", 3, (1, 1), seed=3),
    ]
    with SaliencyStoreWriter(tmp_path / "sal.zip") as writer:
        for r in records:
            writer.add_record(r)
    with SaliencyStore(tmp_path / "sal.zip") as store:
        assert store.ids == ["u2", "u0", "u1"]
        for r in records:
            got = store[r.id]
            _check_same(got, r)
            assert (got.saliency[2] == 0).all()
        # the stored map is the row-normalised float16 map plus float32 row maxima
        raw = RecordArchive.__getitem__(store, "u2")
        assert raw["saliency"].dtype == np.float16 and raw["scale"].dtype == np.float32
        np.testing.assert_array_equal(raw["scale"], records[0].saliency.reshape(4, -1).max(axis=1))
        assert raw["saliency"].reshape(4, -1).max(axis=1).tolist() == [1.0, 1.0, 0.0, 1.0]
        # tiny KL values keep their relative precision (no float16 underflow)
        assert store["u2"].saliency[0].max() == pytest.approx(records[0].saliency[0].max(), rel=1e-6)


def test_store_rejects_bad_records(tmp_path: Path) -> None:
    good = _record("u", "input")
    with SaliencyStoreWriter(tmp_path / "sal.zip") as writer:
        bad_cases = [
            dataclasses.replace(good, kind="frames"),
            dataclasses.replace(good, saliency=good.saliency[:, :, 0]),  # 2-D for kind "input"
            dataclasses.replace(good, kind="encoder"),  # 3-D for kind "encoder"
            dataclasses.replace(good, saliency=good.saliency[:-1]),  # rows != targets
            dataclasses.replace(good, counts=good.counts[:-1]),
            dataclasses.replace(good, saliency=-good.saliency),
            dataclasses.replace(good, saliency=np.where(good.saliency > 1, np.nan, good.saliency)),
            dataclasses.replace(good, saliency=np.where(good.saliency > 1, np.inf, good.saliency)),
        ]
        for bad in bad_cases:
            with pytest.raises(ValueError):
                writer.add_record(bad)
        negative_one = good.saliency.copy()
        negative_one[1, 2, 3] = -1e-9
        with pytest.raises(ValueError):
            writer.add_record(dataclasses.replace(good, saliency=negative_one))
        writer.add_record(good)
        with pytest.raises(DataError):
            writer.add_record(good)
    with SaliencyStore(tmp_path / "sal.zip") as store:
        assert store.ids == ["u"]


# --------------------------------------------------------------------------- selection
def test_select_ids() -> None:
    ids = [f"u{k}" for k in range(7)]
    assert select_ids(ids, None) == ids
    assert select_ids(ids, 3) == ids[:3]
    assert select_ids(ids, 100) == ids
    assert select_ids(tuple(ids), 2) == ["u0", "u1"]
    for bad in (0, -1):
        with pytest.raises(ValueError):
            select_ids(ids, bad)


@pytest.mark.parametrize(("n_ids", "count"), [(10, 3), (7, 7), (3, 5), (1, 1), (0, 2)])
def test_shard_ids_partition_the_selection(n_ids: int, count: int) -> None:
    ids = [f"u{k}" for k in range(n_ids)]
    shards = [shard_ids(ids, k, count) for k in range(count)]
    flat = [u for s in shards for u in s]
    assert sorted(flat) == sorted(ids) and len(flat) == len(set(flat))  # union, disjoint
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1  # balanced
    for s in shards:  # each shard keeps the selection order
        assert s == sorted(s, key=ids.index)


def test_shard_ids_range() -> None:
    for index, count in ((0, 0), (3, 3), (-1, 2)):
        with pytest.raises(ValueError):
            shard_ids(["a"], index, count)


# --------------------------------------------------------------------------- gathering
def _write_shards(tmp_path: Path, ids: list[str], count: int) -> list[Path]:
    paths = []
    for k in range(count):
        path = tmp_path / f"shard{k}.zip"
        with SaliencyStoreWriter(path) as writer:
            for uid in shard_ids(ids, k, count):
                writer.add_record(_record(uid, seed=ids.index(uid)))
        paths.append(path)
    return paths


def test_gather_shards_restores_the_selection_order(tmp_path: Path) -> None:
    ids = [f"utt{k}" for k in (5, 1, 9, 3, 7, 0, 2)]  # not sorted: the order must come from the shards
    paths = _write_shards(tmp_path, ids, 3)
    assert gather_shards(paths, tmp_path / "all.zip") == len(ids)
    with SaliencyStore(tmp_path / "all.zip") as store:
        assert store.ids == ids
        for uid in ids:
            _check_same(store[uid], _record(uid, seed=ids.index(uid)))
    # members are copied, not re-encoded
    with RecordArchive(paths[1]) as shard, RecordArchive(tmp_path / "all.zip") as gathered:
        for uid in shard.ids:
            assert gathered.raw(uid) == shard.raw(uid)
    # an explicit order
    order = sorted(ids)
    assert gather_shards(paths, tmp_path / "sorted.zip", order=order) == len(ids)
    with SaliencyStore(tmp_path / "sorted.zip") as store:
        assert store.ids == order
    # an empty shard list gives an empty store
    assert gather_shards([], tmp_path / "empty.zip") == 0
    with SaliencyStore(tmp_path / "empty.zip") as store:
        assert len(store) == 0


def test_gather_shards_errors(tmp_path: Path) -> None:
    ids = [f"u{k}" for k in range(5)]
    paths = _write_shards(tmp_path, ids, 2)
    out = tmp_path / "all.zip"
    with pytest.raises(DataError, match="u9"):  # the order names an utterance no shard has
        gather_shards(paths, out, order=[*ids[:4], "u9"])
    with pytest.raises(DataError):  # an utterance of the shards is not in the order
        gather_shards(paths, out, order=ids[:4])
    with pytest.raises(DataError):
        gather_shards(paths, out, order=[*ids[:4], "u3"])  # duplicated in the order
    with pytest.raises(DataError):
        gather_shards(paths, out, order=[*ids, "u0"])
    with pytest.raises(DataError):
        gather_shards(paths[:1], out, order=ids)  # a missing shard
    # the same utterance in two shards
    dup = tmp_path / "dup.zip"
    with SaliencyStoreWriter(dup) as writer:
        writer.add_record(_record("u2"))
    with pytest.raises(DataError, match="u2"):
        gather_shards([*paths, dup], out)
    with pytest.raises(DataError):
        gather_shards([*paths, tmp_path / "absent.zip"], out)
    assert not out.exists()


# --------------------------------------------------------------------------- end to end
N_MELS = 8


def _setup_split(tmp_path: Path, n_utts: int = 5) -> dict[str, Any]:
    """A tiny checkpoint, feature manifest, segmentation store and cross-attention store."""
    model = tiny_model(0, vocab=12, n_mels=N_MELS)
    ckpt = save_checkpoint(
        tmp_path / "avg.pt", {"dims": model.dims.asdict(), "model": model.float().state_dict()}
    )
    rng = np.random.default_rng(0)
    rows = []
    for k in range(n_utts):
        uid = f"spk_{k:02d}"
        np.save(tmp_path / f"{uid}.npy", rng.standard_normal((16 + 3 * k, N_MELS)).astype(np.float32))
        rows.append(
            {
                "id": uid,
                "audio": f"{uid}.npy",
                "n_frames": 0,
                "src_text": "a",
                "tgt_text": "b",
                "speaker": "s",
                "src_lang": "en",
                "tgt_lang": "it",
            }
        )
    rows = rows[::-1]  # manifest order is not sorted
    write_manifest(tmp_path / "raw.tsv", rows)
    extract_split(
        tmp_path / "raw.tsv",
        tmp_path / "f.fbank.zip",
        tmp_path / "f.fbank.tsv",
        FbankOptions(N_MELS),
        progress=False,
    )
    reader = FeatureReader(tmp_path / "f.fbank.tsv")
    seg_opts = SegmentationOptions(base_segments=(8, 12), threshold_frames=None, reference_frames=16)
    write_segmentations(tmp_path / "seg.zip", ((r["id"], reader[r["id"]]) for r in rows), seg_opts)
    with CrossAttentionStoreWriter(tmp_path / "xattn.zip") as writer:
        for k, r in enumerate(rows):
            dec, tgt = decoder_io([LANG, *[5 + (k + j) % 6 for j in range(1 + k % 3)]])
            t_enc = int(model.output_lengths(torch.tensor([reader[r["id"]].shape[0]]))[0])
            att = rng.dirichlet(np.ones(t_enc), size=(2, 2, len(dec))).astype(np.float32)
            pieces = [f"p{t}" for t in tgt]
            writer.add(r["id"], att, dec, tgt, pieces, row_roles(tgt, [LANG]))
    return {
        "ckpt": ckpt,
        "features": tmp_path / "f.fbank.tsv",
        "segments": tmp_path / "seg.zip",
        "xattn": tmp_path / "xattn.zip",
        "ids": [r["id"] for r in rows],
    }


@pytest.mark.parametrize("kind", ["input", "encoder"])
def test_explain_shard_end_to_end(tmp_path: Path, kind: str) -> None:
    setup = _setup_split(tmp_path)
    ids = setup["ids"]
    opts = OcclusionOptions(n_masks=12, p=0.5 if kind == "input" else 0.7, seed=4, batch_size=5)
    segments = setup["segments"] if kind == "input" else None
    shards = []
    for k in range(2):
        out = tmp_path / f"{kind}.{k}.zip"
        summary = explain_shard(
            kind,
            setup["ckpt"],
            setup["features"],
            setup["xattn"],
            out,
            opts,
            shard=(k, 2),
            max_utterances=4,
            segments_path=segments,
            device="cpu",
            progress=False,
        )
        assert summary["utterances"] == len(shard_ids(ids[:4], k, 2))
        shards.append(out)
    assert gather_shards(shards, tmp_path / f"{kind}.zip") == 4
    model, _ = load_model(setup["ckpt"], "cpu")
    reader = FeatureReader(setup["features"])
    with (
        SaliencyStore(tmp_path / f"{kind}.zip") as store,
        SegmentationStore(setup["segments"]) as seg,
        RecordArchive(setup["xattn"]) as xattn,
    ):
        assert store.ids == ids[:4]  # the first max_utterances of the cross-attention store, in order
        for uid in store.ids:
            rec = store[uid]
            x = xattn[uid]
            assert rec.decoder_input == x["decoder_input"].tolist()
            assert rec.target_ids == x["target_ids"].tolist()
            assert rec.pieces == x["pieces"].tolist() and rec.roles == x["roles"].tolist()
            assert (rec.kind, rec.p, rec.seed) == (kind, opts.p, 4)
            if kind == "input":
                direct = explain_input(model, reader[uid], rec.decoder_input, seg.levels(uid), opts, uid)
                assert rec.n_masks == 12
            else:
                direct = explain_encoder(model, reader[uid], rec.decoder_input, opts, uid)
            assert rec.saliency.shape == direct.saliency.shape
            assert rec.saliency.shape[0] == len(rec.target_ids)
            np.testing.assert_array_equal(rec.counts, direct.counts)
            row_max = direct.saliency.reshape(len(rec.target_ids), -1).max(axis=1)
            err = np.abs(rec.saliency - direct.saliency).reshape(len(rec.target_ids), -1).max(axis=1)
            assert (err <= 1e-3 * row_max).all()
            assert row_max.max() > 0


def test_explain_shard_errors(tmp_path: Path) -> None:
    setup = _setup_split(tmp_path, n_utts=2)
    opts = OcclusionOptions(n_masks=4, batch_size=4)
    common = dict(
        checkpoint=setup["ckpt"],
        manifest=setup["features"],
        xattn_path=setup["xattn"],
        options=opts,
        device="cpu",
        progress=False,
    )
    with pytest.raises(ValueError):
        explain_shard("frames", out_path=tmp_path / "o.zip", **common)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        explain_shard("input", out_path=tmp_path / "o.zip", **common)  # type: ignore[arg-type]
    # a segmentation store lacking an utterance
    with (
        RecordArchive(setup["segments"]) as seg,
        RecordArchiveWriter(tmp_path / "partial.zip", ("labels", "n_segments", "requested")) as writer,
    ):
        writer.add_raw(setup["ids"][0], seg.raw(setup["ids"][0]))
    with pytest.raises(DataError, match=setup["ids"][1]):
        explain_shard("input", out_path=tmp_path / "o.zip", segments_path=tmp_path / "partial.zip", **common)  # type: ignore[arg-type]
    assert not (tmp_path / "o.zip").exists()


# --------------------------------------------------------------------------- resume
@pytest.mark.parametrize("kind", ["input", "encoder"])
def test_shard_resumes_from_its_partial_store(tmp_path: Path, kind: str, monkeypatch) -> None:
    """A rerun takes the utterances an earlier attempt finished from the partial store, computes
    the others, and writes a shard store byte-identical to an uninterrupted run's."""
    setup = _setup_split(tmp_path)
    opts = OcclusionOptions(n_masks=12, p=0.5 if kind == "input" else 0.7, seed=4, batch_size=5)
    segments = setup["segments"] if kind == "input" else None
    partial = tmp_path / "smx.partial"

    def run(out: Path, options: OcclusionOptions = opts) -> dict:
        return explain_shard(kind, setup["ckpt"], setup["features"], setup["xattn"], out, options,
                             segments_path=segments, device="cpu", progress=False, resume_dir=partial)  # fmt: skip

    plain = tmp_path / "plain.zip"
    explain_shard(kind, setup["ckpt"], setup["features"], setup["xattn"], plain, opts,
                  segments_path=segments, device="cpu", progress=False)  # fmt: skip
    assert run(tmp_path / "first.zip")["resumed"] == 0
    assert (tmp_path / "first.zip").read_bytes() == plain.read_bytes()
    (key,) = [d for d in partial.iterdir()]
    kept = sorted(key.iterdir())
    assert len(kept) == 5
    for path in kept[2:]:  # as if the job had been killed after its first two utterances
        path.unlink()
    computed: list[str] = []
    real = shards_module.explain_input if kind == "input" else shards_module.explain_encoder

    def counting(model, feats, dec, *rest):
        computed.append(rest[-1])
        return real(model, feats, dec, *rest)

    monkeypatch.setattr(shards_module, "explain_input" if kind == "input" else "explain_encoder", counting)
    summary = run(tmp_path / "second.zip")
    assert summary["resumed"] == 2 and len(computed) == 3
    assert not {p.name.split(".")[0] for p in kept[:2]} & set(computed)
    assert (tmp_path / "second.zip").read_bytes() == plain.read_bytes()

    # a damaged kept file is recomputed, not trusted
    victim = sorted(key.iterdir())[0]
    victim.write_bytes(b"garbage")
    computed.clear()
    assert run(tmp_path / "third.zip")["resumed"] == 4 and len(computed) == 1
    assert (tmp_path / "third.zip").read_bytes() == plain.read_bytes()

    # other settings: a new key, nothing reused, the stale folder removed
    computed.clear()
    assert run(tmp_path / "other.zip", dataclasses.replace(opts, n_masks=10))["resumed"] == 0
    assert len(computed) == 5 and not key.exists() and len(list(partial.iterdir())) == 1


def test_run_key_and_inputs_digest_change_with_what_makes_a_map(tmp_path: Path) -> None:
    setup = _setup_split(tmp_path, n_utts=1)
    opts = OcclusionOptions(n_masks=12, seed=4)
    key = run_key("encoder", opts, setup["ckpt"], torch.device("cpu"))
    assert key == run_key("encoder", opts, setup["ckpt"], torch.device("cpu"))
    assert key != run_key("input", opts, setup["ckpt"], torch.device("cpu"))
    assert key != run_key("encoder", dataclasses.replace(opts, seed=5), setup["ckpt"], torch.device("cpu"))
    other = tmp_path / "other.pt"
    other.write_bytes(Path(setup["ckpt"]).read_bytes() + b"\0")
    assert key != run_key("encoder", opts, other, torch.device("cpu"))
    feats = np.zeros((5, 3), dtype=np.float32)
    d = inputs_digest(feats, [1, 2])
    assert d == inputs_digest(feats.copy(), [1, 2])
    assert d != inputs_digest(feats + 1e-6, [1, 2]) and d != inputs_digest(feats, [1, 3])
    assert d != inputs_digest(feats, [1, 2], [np.zeros((5, 3), dtype=np.int32)])
    assert partial_root("r/saliency/smx.shards/1-of-2.zip") == Path("r/saliency/smx.partial")
