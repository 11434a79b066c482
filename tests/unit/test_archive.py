"""Unit tests for caspes.core.zipstore (per-utterance record archives)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from caspes.core.manifest import DataError
from caspes.core.zipstore import RecordArchive, RecordArchiveWriter, check_uid, npz_bytes

FIELDS = ("matrix", "scalar", "words", "ints")


def _records() -> list[tuple[str, dict[str, np.ndarray]]]:
    rng = np.random.default_rng(0)
    return [
        (
            "utt_b",
            {
                "matrix": rng.standard_normal((3, 4)).astype(np.float32),
                "scalar": np.array(2.5),
                "words": np.array(["héllo", "wörld", "日本"], dtype=np.str_),
                "ints": np.arange(5, dtype=np.int16),
            },
        ),
        (
            "utt_a",
            {
                "matrix": rng.standard_normal((0, 4)),
                "scalar": np.array(7, dtype=np.int64),
                "words": np.array("ünïcode", dtype=np.str_),
                "ints": np.array([], dtype=np.int32),
            },
        ),
        (
            "10-2_x.y",
            {
                "matrix": rng.standard_normal((2, 2, 2)),
                "scalar": np.array(True),
                "words": np.array([], dtype=np.str_),
                "ints": np.array([[1, 2], [3, 4]], dtype=np.int64),
            },
        ),
    ]


def _write(path: Path, records=None) -> None:
    with RecordArchiveWriter(path, FIELDS) as writer:
        for uid, arrays in records if records is not None else _records():
            writer.add(uid, arrays)


def test_round_trip_fields_order_and_dtypes(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "store.zip"  # parent folder is created
    _write(path)
    records = _records()
    with RecordArchive(path, FIELDS) as archive:
        assert archive.ids == [uid for uid, _ in records]  # order written, not sorted
        assert list(archive) == archive.ids
        assert len(archive) == 3
        assert "utt_a" in archive and "missing" not in archive
        for uid, arrays in records:
            got = archive[uid]
            assert set(got) == {"id", *FIELDS}
            assert got["id"].shape == () and str(got["id"]) == uid
            for name, want in arrays.items():
                assert got[name].dtype == want.dtype, name
                assert got[name].shape == want.shape, name
                np.testing.assert_array_equal(got[name], want)
        # 0-d arrays stay 0-d
        assert archive["utt_b"]["scalar"].shape == ()
        assert archive["utt_a"]["words"].shape == ()
        assert str(archive["utt_a"]["words"]) == "ünïcode"
        assert archive["utt_b"]["words"].tolist() == ["héllo", "wörld", "日本"]
        with pytest.raises(KeyError):
            archive["missing"]
    # the members are plain npz files readable without pickles
    with zipfile.ZipFile(path) as zf:
        assert [i.filename for i in zf.infolist()] == [f"{uid}.npz" for uid, _ in records]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
        with np.load(io.BytesIO(zf.read("utt_b.npz")), allow_pickle=False) as z:
            assert z.files == ["id", *FIELDS]  # schema order, id first
        # fixed timestamps (outer and inner zips): the bytes do not depend on when they were written
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        with zipfile.ZipFile(io.BytesIO(zf.read("utt_a.npz"))) as inner:
            assert {i.date_time for i in inner.infolist()} == {(1980, 1, 1, 0, 0, 0)}
            assert {i.compress_type for i in inner.infolist()} == {zipfile.ZIP_DEFLATED}


def test_same_records_give_byte_identical_files(tmp_path: Path) -> None:
    _write(tmp_path / "one.zip")
    _write(tmp_path / "two.zip")
    assert (tmp_path / "one.zip").read_bytes() == (tmp_path / "two.zip").read_bytes()
    # and a change in one value changes the bytes
    records = _records()
    records[1][1]["scalar"] = np.array(8, dtype=np.int64)
    _write(tmp_path / "three.zip", records)
    assert (tmp_path / "three.zip").read_bytes() != (tmp_path / "one.zip").read_bytes()


def test_npz_bytes_is_deterministic_and_ordered() -> None:
    arrays = {"b": np.arange(3), "a": np.ones((2, 2))}
    blob = npz_bytes(arrays, ["b", "a"])
    assert blob == npz_bytes(dict(reversed(list(arrays.items()))), ["b", "a"])
    with np.load(io.BytesIO(blob)) as z:
        assert z.files == ["b", "a"]
        np.testing.assert_array_equal(z["a"], np.ones((2, 2)))


def test_duplicate_id_raises_data_error(tmp_path: Path) -> None:
    uid, arrays = _records()[0]
    with RecordArchiveWriter(tmp_path / "a.zip", FIELDS) as writer:
        writer.add(uid, arrays)
        with pytest.raises(DataError, match="utt_b"):
            writer.add(uid, arrays)
        with pytest.raises(DataError):
            writer.add_raw(uid, b"whatever")
    # the failed adds left the archive consistent
    with RecordArchive(tmp_path / "a.zip", FIELDS) as archive:
        assert archive.ids == [uid]


def test_missing_or_unknown_fields_raise_value_error(tmp_path: Path) -> None:
    uid, arrays = _records()[0]
    with RecordArchiveWriter(tmp_path / "a.zip", FIELDS) as writer:
        lacking = {k: v for k, v in arrays.items() if k != "ints"}
        with pytest.raises(ValueError, match="ints"):
            writer.add(uid, lacking)
        with pytest.raises(ValueError, match="bogus"):
            writer.add(uid, {**arrays, "bogus": np.zeros(1)})
        for bad in ("", "a/b", "a\\b", "a\tb", "a\nb", 3):
            with pytest.raises(ValueError):
                writer.add(bad, arrays)  # type: ignore[arg-type]
        writer.add(uid, arrays)
    with RecordArchive(tmp_path / "a.zip", FIELDS) as archive:
        assert archive.ids == [uid]


def test_check_uid() -> None:
    assert check_uid("abc_1.2-x") == "abc_1.2-x"
    with pytest.raises(ValueError):
        check_uid(None)


def test_writer_exception_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "a.zip"
    uid, arrays = _records()[0]
    with pytest.raises(RuntimeError):
        with RecordArchiveWriter(path, FIELDS) as writer:
            writer.add(uid, arrays)
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    # an exception does not clobber an existing archive either
    _write(path)
    before = path.read_bytes()
    with pytest.raises(RuntimeError):
        with RecordArchiveWriter(path, FIELDS) as writer:
            writer.add(uid, arrays)
            raise RuntimeError("boom")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zip"]


def test_add_raw_copies_a_member(tmp_path: Path) -> None:
    _write(tmp_path / "src.zip")
    with RecordArchive(tmp_path / "src.zip", FIELDS) as src:
        with RecordArchiveWriter(tmp_path / "dst.zip", FIELDS) as writer:
            for uid in reversed(src.ids):
                writer.add_raw(uid, src.raw(uid))
        with RecordArchive(tmp_path / "dst.zip", FIELDS) as dst:
            assert dst.ids == list(reversed(src.ids))
            for uid in src.ids:
                assert dst.raw(uid) == src.raw(uid)
                for name, value in src[uid].items():
                    np.testing.assert_array_equal(dst[uid][name], value)


def test_reader_errors_name_the_path(tmp_path: Path) -> None:
    bad = tmp_path / "not_a_zip.zip"
    bad.write_text("hello, I am text\n")
    with pytest.raises(DataError, match="not_a_zip.zip"):
        RecordArchive(bad)
    with pytest.raises(DataError, match="absent.zip"):
        RecordArchive(tmp_path / "absent.zip")
    # a zip with a foreign member
    foreign = tmp_path / "foreign.zip"
    with zipfile.ZipFile(foreign, "w") as zf:
        zf.writestr("readme.txt", "x")
    with pytest.raises(DataError, match="readme.txt"):
        RecordArchive(foreign)
    # a reader asking for a field the records lack
    _write(tmp_path / "a.zip")
    with RecordArchive(tmp_path / "a.zip", (*FIELDS, "extra")) as archive:
        with pytest.raises(DataError, match="extra"):
            archive["utt_a"]
    # a member whose id field disagrees with its name, and a corrupt member
    with RecordArchive(tmp_path / "a.zip", FIELDS) as archive:
        blob = archive.raw("utt_a")
    with RecordArchiveWriter(tmp_path / "b.zip", FIELDS) as writer:
        writer.add_raw("renamed", blob)
        writer.add_raw("garbage", b"not an npz")
    with RecordArchive(tmp_path / "b.zip", FIELDS) as archive:
        with pytest.raises(DataError, match="renamed"):
            archive["renamed"]
        with pytest.raises(DataError, match="garbage"):
            archive["garbage"]
