"""Damaged files stop a job with a DataError naming the file and the member, never a bare
traceback from numpy, zipfile or torch: a corrupt feature or saliency member, a truncated checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tinymodels import tiny_model

from caspes.core.manifest import DataError, write_manifest
from caspes.core.zipstore import read_archive_array
from caspes.explain.shards import gather_shards
from caspes.explain.stores import SaliencyRecord, SaliencyStore, SaliencyStoreWriter
from caspes.features import FeatureArchiveWriter, FeatureReader
from caspes.model.checkpoint import load_checkpoint, load_model, save_checkpoint


def _flip_byte(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def _feature_split(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    with FeatureArchiveWriter(tmp_path / "test.fbank.zip") as writer:
        for uid in ("u0", "u1"):
            writer.add(uid, rng.standard_normal((20, 8)).astype(np.float32))
    rows = [
        {"id": uid, "audio": writer.references[uid], "n_frames": 20, "src_text": "a", "tgt_text": "b",
         "speaker": "s", "src_lang": "en", "tgt_lang": "it"}
        for uid in ("u0", "u1")
    ]  # fmt: skip
    write_manifest(tmp_path / "test.fbank.tsv", rows)
    return tmp_path / "test.fbank.tsv"


def test_corrupt_feature_member_names_archive_and_member(tmp_path):
    manifest = _feature_split(tmp_path)
    reader = FeatureReader(manifest)
    ref = reader.rows[1]["audio"]
    _, offset, length = (int(x) if i else x for i, x in enumerate(ref.rsplit(":", 2)))
    before = reader["u0"]
    _flip_byte(tmp_path / "test.fbank.zip", offset + length - 7)  # inside u1's float data
    np.testing.assert_array_equal(FeatureReader(manifest)["u0"], before)  # the other member still reads
    with pytest.raises(DataError, match=r"test\.fbank\.zip: member 'u1\.npy' .* is corrupt"):
        FeatureReader(manifest)["u1"]
    with pytest.raises(DataError, match="is not the start of a member"):
        read_archive_array(f"test.fbank.zip:{offset + 4}:{length - 4}", manifest)


def _saliency_store(path: Path) -> None:
    with SaliencyStoreWriter(path) as writer:
        for k, uid in enumerate(("a", "b")):
            writer.add_record(
                SaliencyRecord(
                    id=uid, saliency=np.full((2, 5), 1.0 + k, dtype=np.float32), counts=np.full(5, 3),
                    decoder_input=[2, 7], target_ids=[7, 3], pieces=["▁x", "</s>"], roles=["lang", "eos"],
                    kind="encoder", n_masks=4, p=0.5, seed=1,
                )
            )  # fmt: skip


def test_corrupt_saliency_member_names_store_and_member(tmp_path):
    store = tmp_path / "smh.zip"
    _saliency_store(store)
    data = store.read_bytes()
    at = data.index(b"b.npz") + len("b.npz") + 40  # inside member b's deflated npz
    _flip_byte(store, at)
    with SaliencyStore(store) as s:
        assert s["a"].saliency.shape == (2, 5)
        with pytest.raises(DataError, match=r"smh\.zip: member 'b\.npz' of this saliency store is corrupt"):
            s["b"]
    with pytest.raises(DataError, match=r"smh\.zip: member 'b\.npz'"):
        gather_shards([store], tmp_path / "gathered.zip", order=["a", "b"])  # raw copy checks the CRC too
    assert not (tmp_path / "gathered.zip").exists()


def test_truncated_checkpoint_names_the_file(tmp_path):
    model = tiny_model(0, vocab=12, n_mels=8)
    path = save_checkpoint(
        tmp_path / "checkpoint.pt", {"dims": model.dims.asdict(), "model": model.state_dict()}
    )
    load_model(path)
    data = path.read_bytes()
    for keep in (len(data) // 2, 100, 0):
        path.write_bytes(data[:keep])
        with pytest.raises(
            DataError, match=rf"checkpoint\.pt: unreadable checkpoint \({keep} bytes; truncated"
        ):
            load_model(path)
        with pytest.raises(DataError, match="checkpoint.pt"):
            load_checkpoint(path)
