import pytest

from caspes.core.manifest import DataError, write_manifest
from caspes.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer, collect_texts, train_tokenizer

EN = ["the black cat sleeps", "the red car is fast", "she sees him", "my dog eats the bread"] * 5
IT = ["il gatto nero dorme", "la macchina rossa è veloce", "lei lo vede", "il mio cane mangia il pane"] * 5


def test_special_ids_and_language_tags(tmp_path):
    n = train_tokenizer(EN + IT, tmp_path / "t.model", ["en", "it"], vocab_size=60)
    tok = Tokenizer(tmp_path / "t.model")
    assert len(tok) == n
    sp = tok.sp
    assert [sp.id_to_piece(i) for i in (BOS_ID, PAD_ID, EOS_ID, UNK_ID)] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert tok.langs == ["en", "it"]
    assert tok.lang_id("en") == 4 and tok.lang_id("it") == 5
    ids = tok.encode("il gatto nero dorme", lang="it")
    assert ids[0] == tok.lang_id("it")
    assert tok.decode(ids + [EOS_ID]) == "il gatto nero dorme"
    # The tag is never split: it is one piece even inside text.
    assert "<lang:en>" in tok.pieces("<lang:en> the cat")
    with pytest.raises(KeyError, match="no language tag for 'de'"):
        tok.lang_id("de")
    assert (tmp_path / "t.vocab").read_text().splitlines()[4].startswith("<lang:en>\t")


def test_training_is_deterministic(tmp_path):
    train_tokenizer(EN, tmp_path / "a.model", ["en"], vocab_size=40)
    train_tokenizer(EN, tmp_path / "b.model", ["en"], vocab_size=40)
    assert (tmp_path / "a.model").read_bytes() == (tmp_path / "b.model").read_bytes()


def test_vocab_size_is_an_upper_bound(tmp_path):
    n = train_tokenizer(EN[:4], tmp_path / "s.model", ["en"], vocab_size=5000)
    assert 8 < n < 5000


def test_collect_texts_by_language(tmp_path):
    rows = [
        {
            "id": "a",
            "audio": "x",
            "n_frames": 1,
            "src_text": "the cat",
            "tgt_text": "il gatto",
            "speaker": "",
            "src_lang": "en",
            "tgt_lang": "it",
        }
    ]
    write_manifest(tmp_path / "en.tsv", rows)
    assert collect_texts([tmp_path / "en.tsv"], ["en"]) == ["the cat"]
    assert collect_texts([tmp_path / "en.tsv"], ["en", "it"]) == ["the cat", "il gatto"]
    assert collect_texts([tmp_path / "en.tsv"], ["de"]) == []
    with pytest.raises(DataError, match="no training text"):
        train_tokenizer([], tmp_path / "e.model", ["de"], vocab_size=10)
