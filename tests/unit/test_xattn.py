"""Unit tests for caspes.decode.xattn (cross-attention of the final hypothesis and its store)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tinymodels import one_thread, tiny_model  # noqa: F401 - one_thread is a fixture

from caspes.core.manifest import DataError
from caspes.decode.beam import beam_search
from caspes.decode.options import DecodingOptions
from caspes.decode.xattn import (
    CrossAttentionRecord,
    CrossAttentionStore,
    CrossAttentionStoreWriter,
    decoder_io,
    extract_cross_attention,
    extract_cross_attention_batch,
    row_roles,
    write_cross_attention_store,
)
from caspes.model import S2TModel

N_MELS = 8
EOS = 2
LANG_EN, LANG_IT = 4, 5


pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny_model(seed: int = 0, vocab: int = 10) -> S2TModel:
    return tiny_model(seed, vocab=vocab, n_mels=N_MELS)


def _features(lengths: list[int], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((t, N_MELS)) for t in lengths]


def _t_enc(model: S2TModel, frames: int) -> int:
    return int(model.output_lengths(torch.tensor([frames]))[0])


def test_decoder_io_and_row_roles() -> None:
    dec, tgt = decoder_io([LANG_IT, 7, 8, 6])
    assert dec == [EOS, LANG_IT, 7, 8, 6]
    assert tgt == [LANG_IT, 7, 8, 6, EOS]
    assert row_roles(tgt, [LANG_EN, LANG_IT]) == ["lang", "token", "token", "token", "eos"]
    assert row_roles(decoder_io([])[1], [LANG_EN]) == ["eos"]
    with pytest.raises(ValueError):
        decoder_io([LANG_IT, EOS])


def test_rows_sum_to_one_shape_and_incremental_equivalence() -> None:
    model = _tiny_model(1)
    feats = _features([37, 22], 3)
    hyps = beam_search(model, feats, [[LANG_EN], [LANG_IT]], DecodingOptions(max_len_b=9, beam_size=3))
    for f, p, h in zip(feats, ([LANG_EN], [LANG_IT]), hyps):
        dec, _ = decoder_io([*p, *h])
        att = extract_cross_attention(model, f, dec)
        t_enc = _t_enc(model, f.shape[0])
        assert att.dtype == np.float32
        assert att.shape == (2, 2, len(dec), t_enc)
        np.testing.assert_allclose(att.sum(-1), 1.0, atol=1e-5)
        # incremental decoding of the same hypothesis: last-query attention at every step
        with torch.no_grad():
            x = torch.from_numpy(f).unsqueeze(0)
            enc = model.encode(x, torch.tensor([f.shape[0]]))
            cache, rows = None, []
            for i in range(1, len(dec) + 1):
                _, cache, w = model.decode_step(
                    enc.states, enc.padding_mask, torch.tensor([dec[:i]]), cache, return_attention=True
                )
                rows.append(w[0])  # (L, H, T')
        incremental = torch.stack(rows, dim=2).numpy()  # (L, H, I, T')
        np.testing.assert_allclose(att, incremental, rtol=0, atol=1e-5)
        # tensor input gives the same
        np.testing.assert_array_equal(extract_cross_attention(model, torch.from_numpy(f), dec), att)


def test_padded_frames_excluded_batched_equals_one_by_one() -> None:
    model = _tiny_model(2)
    feats = _features([41, 13, 26], 4)
    decs = [[EOS, LANG_EN, 6, 7], [EOS, LANG_IT, 8, 6, 6, 9, 7], [EOS, LANG_EN]]
    batched = extract_cross_attention_batch(model, feats, decs)
    single = [extract_cross_attention(model, f, d) for f, d in zip(feats, decs)]
    chunked = extract_cross_attention_batch(model, feats, decs, batch_size=2)
    for f, d, b, s, c in zip(feats, decs, batched, single, chunked):
        assert b.shape == s.shape == (2, 2, len(d), _t_enc(model, f.shape[0]))
        np.testing.assert_allclose(b, s, rtol=0, atol=1e-6)
        np.testing.assert_allclose(c, s, rtol=0, atol=1e-6)
    # padded tensor input with garbage in the padding
    padded = torch.full((3, 41, N_MELS), 9.0, dtype=torch.float64)
    for i, f in enumerate(feats):
        padded[i, : f.shape[0]] = torch.from_numpy(f)
    from_tensor = extract_cross_attention_batch(model, padded, decs, lengths=[41, 13, 26])
    for t, s in zip(from_tensor, single):
        np.testing.assert_allclose(t, s, rtol=0, atol=1e-6)
    model.train()
    extract_cross_attention_batch(model, feats[:1], decs[:1])
    assert model.training  # training flag restored
    for bad in ([LANG_EN, 6], [EOS, 1, 6], [EOS, 99], [EOS] * 33):
        with pytest.raises(ValueError):
            extract_cross_attention_batch(model, feats[:1], [bad])
    with pytest.raises(ValueError):
        extract_cross_attention_batch(model, feats, decs[:2])


def _records(model: S2TModel) -> list[CrossAttentionRecord]:
    feats = _features([30, 17], 5)
    targets = [[LANG_IT, 6, 7, 7], [LANG_EN]]
    out = []
    for uid, f, t in zip(("utt_b", "utt_a"), feats, targets):
        dec, tgt = decoder_io(t)
        out.append(
            CrossAttentionRecord(
                id=uid,
                attention=extract_cross_attention(model, f, dec),
                decoder_input=dec,
                target_ids=tgt,
                pieces=[f"p{x}" if x != EOS else "</s>" for x in tgt],
                roles=row_roles(tgt, [LANG_EN, LANG_IT]),
            )
        )
    return out


def test_store_roundtrip_and_byte_identical_rewrite(tmp_path, monkeypatch) -> None:
    records = _records(_tiny_model(3))
    path = tmp_path / "dev.xattn.zip"
    with CrossAttentionStoreWriter(path) as writer:
        for r in records:
            writer.add_record(r)
    assert not (tmp_path / "dev.xattn.zip.tmp").exists()
    with CrossAttentionStore(path) as store:
        assert store.ids == ["utt_b", "utt_a"]  # written order
        assert len(store) == 2 and "utt_a" in store and "nope" not in store
        for r in records:
            got = store[r.id]
            assert got.id == r.id
            assert got.attention.dtype == np.float32 and got.attention.shape == r.attention.shape
            np.testing.assert_array_equal(got.attention, r.attention.astype(np.float16).astype(np.float32))
            np.testing.assert_allclose(got.attention, r.attention, rtol=1e-3, atol=1e-4)
            np.testing.assert_allclose(got.attention.sum(-1), 1.0, atol=1e-3)
            assert got.decoder_input == r.decoder_input and got.target_ids == r.target_ids
            assert got.pieces == r.pieces and got.roles == r.roles
            assert got.encoder_length == r.attention.shape[-1]
        assert store["utt_a"].roles == ["lang", "eos"]
        with pytest.raises(KeyError):
            store["nope"]
    # each member is a plain .npz
    import io
    import zipfile

    with zipfile.ZipFile(path) as zf:
        assert [i.compress_type for i in zf.infolist()] == [zipfile.ZIP_STORED] * 2
        with np.load(io.BytesIO(zf.read("utt_a.npz")), allow_pickle=False) as z:
            assert z["attention"].dtype == np.float16 and z["target_ids"].dtype == np.int32
            assert str(z["id"]) == "utt_a" and int(z["encoder_length"]) == records[1].attention.shape[-1]
    # a rewrite at another time gives the same bytes
    import time

    first = path.read_bytes()
    later = time.time() + 3 * 86400
    monkeypatch.setattr(time, "time", lambda: later)
    with CrossAttentionStoreWriter(path) as writer:
        for r in records:
            writer.add_record(r)
    assert path.read_bytes() == first


def test_store_writer_validation(tmp_path) -> None:
    (rec, _) = _records(_tiny_model(3))
    with CrossAttentionStoreWriter(tmp_path / "x.zip") as writer:
        writer.add_record(rec)
        with pytest.raises(DataError):
            writer.add_record(rec)  # duplicate id
        bad = dict(
            uid="u",
            attention=rec.attention,
            decoder_input=rec.decoder_input,
            target_ids=rec.target_ids,
            pieces=rec.pieces,
            roles=rec.roles,
        )
        for change in (
            dict(attention=rec.attention[:, :, :-1]),
            dict(target_ids=rec.target_ids[::-1]),
            dict(roles=["lang"] + ["word"] * (len(rec.roles) - 1)),
            dict(pieces=rec.pieces[:-1]),
            dict(uid="a/b"),
        ):
            with pytest.raises(ValueError):
                writer.add(**{**bad, **change})
    # a failed write leaves no file
    with pytest.raises(RuntimeError), CrossAttentionStoreWriter(tmp_path / "y.zip") as writer:
        writer.add_record(rec)
        raise RuntimeError("boom")
    assert not list(tmp_path.glob("y.zip*"))
    with pytest.raises(DataError):
        CrossAttentionStore(tmp_path / "missing.zip")


class _StubTokenizer:
    """The tokenizer interface the store writer uses (caspes.tokenizer.Tokenizer's, caspes.hf's)."""

    langs = ["en", "it"]
    prompt_role = "lang"

    def piece_to_id(self, piece: str) -> int:
        return {"<lang:en>": LANG_EN, "<lang:it>": LANG_IT, "</s>": EOS}.get(piece) or int(piece[1:])

    def id_to_piece(self, i: int) -> str:
        return {LANG_EN: "<lang:en>", LANG_IT: "<lang:it>", EOS: "</s>"}.get(i) or f"p{i}"

    def prompt_token_ids(self) -> set[int]:
        return {LANG_EN, LANG_IT}


def test_write_store_from_decoded_rows(tmp_path) -> None:
    model = _tiny_model(4)
    feats = dict(zip(("u1", "u2", "u3"), _features([33, 12, 21], 6)))
    rows = [
        {"id": "u2", "pieces": "<lang:it> p6 p7"},
        {"id": "u1", "pieces": "<lang:en>"},
        {"id": "u3", "pieces": "<lang:en> p9 p9 p8"},
    ]
    path = tmp_path / "tst.xattn.zip"
    assert write_cross_attention_store(path, model, _StubTokenizer(), feats, rows, batch_size=2) == 3
    with CrossAttentionStore(path) as store:
        assert store.ids == ["u2", "u1", "u3"]
        rec = store["u2"]
        assert rec.decoder_input == [EOS, LANG_IT, 6, 7]
        assert rec.target_ids == [LANG_IT, 6, 7, EOS]
        assert rec.pieces == ["<lang:it>", "p6", "p7", "</s>"]
        assert rec.roles == ["lang", "token", "token", "eos"]
        direct = extract_cross_attention(model, feats["u2"], rec.decoder_input)
        np.testing.assert_allclose(rec.attention, direct, rtol=1e-3, atol=1e-4)
        assert store["u1"].roles == ["lang", "eos"]
