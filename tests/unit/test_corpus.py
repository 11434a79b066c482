import pytest

from caspes.data.synthetic.corpus import SyntheticCorpusConfig, plan_utterances


def _config(**kw):
    base = dict(
        sizes={"train": 30, "dev": 6, "test": 6},
        voices={"en": ["en-us", "en-gb"], "it": ["it"]},
        rates=(150, 200),
        pitches=(40, 60),
        lexicon_fraction=0.25,
        seed=3,
    )
    base.update(kw)
    return SyntheticCorpusConfig(**base)


def test_plan_is_deterministic_and_seeded():
    assert plan_utterances(_config()) == plan_utterances(_config())
    assert plan_utterances(_config()) != plan_utterances(_config(seed=4))


def test_splits_share_no_sentence_on_either_side():
    plan = plan_utterances(_config())
    by_split = {}
    for u in plan:
        by_split.setdefault(u.split, set()).update({u.src_text, u.tgt_text})
    assert not by_split["train"] & by_split["dev"]
    assert not by_split["train"] & by_split["test"]
    assert not by_split["dev"] & by_split["test"]


def test_both_directions_and_sizes():
    plan = plan_utterances(_config())
    for lang, tgt in (("en", "it"), ("it", "en")):
        for split, n in (("train", 30), ("dev", 6), ("test", 6)):
            utts = [u for u in plan if u.lang == lang and u.split == split]
            assert len(utts) == n
            assert {u.tgt_lang for u in utts} == {tgt}
            assert len({u.id for u in utts}) == n
    en = {u.id.split("_", 1)[1]: u for u in plan if u.lang == "en"}
    it = {u.id.split("_", 1)[1]: u for u in plan if u.lang == "it"}
    # The same sentence pair is spoken in both languages, each with its own voice draw.
    assert all(en[k].src_text == it[k].tgt_text and en[k].tgt_text == it[k].src_text for k in en)
    assert {u.voice for u in it.values()} == {"it"}
    assert {u.voice for u in en.values()} == {"en-us", "en-gb"}
    assert {u.rate for u in plan} == {150, 200} and {u.pitch for u in plan} == {40, 60}


def test_test_split_does_not_depend_on_train_size():
    small = [u for u in plan_utterances(_config()) if u.split == "test"]
    large = [
        u for u in plan_utterances(_config(sizes={"train": 90, "dev": 6, "test": 6})) if u.split == "test"
    ]
    assert small == large


def test_config_errors():
    with pytest.raises(ValueError, match="synthetic.voices.it"):
        _config(voices={"en": ["en-us"]})
    with pytest.raises(ValueError, match="synthetic.sizes.train"):
        _config(sizes={"train": -1})


def _needs_espeak():
    from caspes.data.synthetic.espeak import EspeakSynthesizer

    try:
        EspeakSynthesizer().close()
    except Exception as exc:  # library missing
        pytest.skip(f"libespeak-ng not available: {exc}")


def test_check_voices_accepts_variants_and_names_the_key_of_a_bad_voice():
    from caspes.core.manifest import DataError
    from caspes.data.synthetic.corpus import check_voices

    _needs_espeak()
    check_voices(
        _config(voices={"en": ["en-gb+m3", "en-us+f2"], "it": ["it+f2"]}, rates=(175,), pitches=(50,))
    )
    with pytest.raises(DataError, match=r"data\.synthetic\.voices\.it: voice 'xx-yy'"):
        check_voices(_config(voices={"en": ["en-us"], "it": ["xx-yy"]}, rates=(175,), pitches=(50,)))


def test_synthesize_corpus_writes_aligned_manifests(tmp_path):
    import numpy as np

    from caspes.core.audio import read_audio
    from caspes.core.manifest import read_manifest, read_skipped
    from caspes.data.policy import UtterancePolicy
    from caspes.data.synthetic.corpus import synthesize_corpus

    _needs_espeak()
    config = _config(sizes={"train": 4, "dev": 0, "test": 2}, rates=(175,), pitches=(50,))
    synthesize_corpus(config, tmp_path, UtterancePolicy(max_duration_s=2.5), workers=2, progress=False)
    for lang in ("en", "it"):
        rows = read_manifest(tmp_path / lang / "train.tsv")
        skipped = read_skipped(tmp_path / lang / "train.skipped.tsv")
        assert len(rows) + len(skipped) == 4
        assert all(s.reason == "too_long" for s in skipped)  # 2.5 s cap: counted, never silent
        for row in rows:
            audio, rate = read_audio(tmp_path / lang / row["audio"])
            assert rate == 16000 and len(audio) / rate <= 2.5
            spans = [tuple(map(float, p.split(":"))) for p in row["word_times"].split()]
            assert len(spans) == len(row["src_text"].split())
            assert all(a < b for a, b in spans) and all(
                spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1)
            )
            assert spans[-1][1] <= len(audio) / rate + 1e-3
            assert np.abs(audio).max() > 0.05
        assert read_manifest(tmp_path / lang / "dev.tsv") == []
