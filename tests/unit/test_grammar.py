"""Tests for the synthetic English -> Italian sentence generator (caspes.data.synthetic.grammar)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from caspes.data.synthetic import grammar, lexicon
from caspes.data.synthetic.grammar import (
    NP,
    GrammarError,
    SentencePair,
    generate_pairs,
    lexicon_size,
    lexicon_words,
    sentence_space,
    translate_clause,
    translate_np,
    vocabulary,
)

WORDS = re.compile(r"^[a-zàèéìòù]+( [a-zàèéìòù]+)*$")


@pytest.fixture(scope="module")
def pairs() -> list[SentencePair]:
    return generate_pairs(20000, seed=7)


@pytest.fixture(scope="module")
def tiny_pairs() -> list[SentencePair]:
    return generate_pairs(6000, seed=3, lexicon_fraction=0.05)


# --------------------------------------------------------------------------- determinism


def test_deterministic_and_seed_dependent() -> None:
    a = generate_pairs(300, seed=1, lexicon_fraction=0.5)
    b = generate_pairs(300, seed=1, lexicon_fraction=0.5)
    c = generate_pairs(300, seed=2, lexicon_fraction=0.5)
    assert a == b
    assert a != c
    assert generate_pairs(100, seed=1, lexicon_fraction=0.5) == a[:100]  # prefix property
    assert generate_pairs(300, seed=1, lexicon_fraction=1.0) != a


def test_independent_of_pythonhashseed() -> None:
    src = str(Path(grammar.__file__).resolve().parents[1])
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from caspes.data.synthetic.grammar import generate_pairs;"
        "print('|'.join(p.en + '=' + p.it for p in generate_pairs(150, 11, 0.3)))"
    )
    outs = []
    for hashseed in ("0", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=hashseed)
        res = subprocess.run(
            [sys.executable, "-c", code, src], env=env, capture_output=True, text=True, check=True
        )
        outs.append(res.stdout)
    assert outs[0] == outs[1]
    assert outs[0].strip() == "|".join(p.en + "=" + p.it for p in generate_pairs(150, 11, 0.3))


# --------------------------------------------------------------------------- size, uniqueness, errors


def test_unique_on_both_sides_and_n_respected(pairs: list[SentencePair]) -> None:
    assert len(pairs) == 20000
    assert all(isinstance(p, SentencePair) for p in pairs)
    assert len({p.en for p in pairs}) == len(pairs)
    assert len({p.it for p in pairs}) == len(pairs)
    assert generate_pairs(0, seed=0) == []
    assert len(generate_pairs(1, seed=0)) == 1


def test_full_size_space_is_large() -> None:
    assert sentence_space(1.0) >= 50_000
    assert sentence_space(1.0) > sentence_space(0.5) > sentence_space(0.25) >= sentence_space(0.01)


def test_impossible_n_raises() -> None:
    limit = sentence_space(0.01)
    with pytest.raises(GrammarError, match="at most"):
        generate_pairs(limit + 1, seed=0, lexicon_fraction=0.01)
    with pytest.raises(GrammarError, match="attempts"):
        generate_pairs(5000, seed=0, lexicon_fraction=0.01, max_attempts=100)


@pytest.mark.parametrize("fraction", [0.0, -0.5, 1.5, float("nan"), "x"])
def test_bad_fraction_raises(fraction) -> None:
    with pytest.raises(GrammarError):
        generate_pairs(10, seed=0, lexicon_fraction=fraction)
    with pytest.raises(GrammarError):
        lexicon_size(fraction)


@pytest.mark.parametrize("n", [-1, 2.5, True])
def test_bad_n_raises(n) -> None:
    with pytest.raises(GrammarError):
        generate_pairs(n, seed=0)


def test_grammar_error_is_value_error() -> None:
    assert issubclass(GrammarError, ValueError)


# --------------------------------------------------------------------------- surface form


def test_surface_form(pairs: list[SentencePair], tiny_pairs: list[SentencePair]) -> None:
    for p in pairs + tiny_pairs:
        for s in (p.en, p.it):
            assert WORDS.match(s), s  # lowercase letters, single spaces, no punctuation/digits
            assert "'" not in s and "’" not in s
            assert 3 <= len(s.split()) <= 12, s


def test_lexicon_has_no_elision_triggers() -> None:
    vowels = "aeiouàèéìòù"
    for cat in lexicon.CATEGORIES:
        for noun in lexicon.NOUNS[cat]:
            assert noun.it_sg[0] not in vowels and noun.it_pl[0] not in vowels, noun
    # verbs that can follow an object clitic (lo/la/mi/ci ...) must not start with a vowel
    for verb in lexicon.TRANSITIVE + lexicon.DITRANSITIVE:
        assert all(f[0] not in vowels for f in verb.forms + (verb.inf,)), verb
    for lang in ("en", "it"):
        assert all(WORDS.match(w) for w in lexicon_words(1.0)[lang])


# --------------------------------------------------------------------------- vocabulary


def test_vocabulary_size_and_shrinking() -> None:
    full, half, quarter = lexicon_size(1.0), lexicon_size(0.5), lexicon_size(0.25)
    for lang in ("en", "it"):
        assert 200 <= full[lang] <= 600, full
        assert full[lang] > half[lang] > quarter[lang] >= lexicon_size(0.01)[lang]


def test_vocabulary_matches_lexicon(pairs: list[SentencePair], tiny_pairs: list[SentencePair]) -> None:
    for lang in ("en", "it"):
        full = lexicon_words(1.0)[lang]
        seen = vocabulary(pairs, lang)
        assert seen <= full, sorted(seen - full)
        assert len(seen) >= 0.95 * len(full)
        # a small lexicon is covered exactly by a modest sample
        assert vocabulary(tiny_pairs, lang) == lexicon_words(0.05)[lang]
        assert len(lexicon_words(0.05)[lang]) == lexicon_size(0.05)[lang]


def test_vocabulary_function() -> None:
    ps = [SentencePair("the cat sleeps", "il gatto dorme"), SentencePair("the dog", "il cane")]
    assert vocabulary(ps, "en") == {"the", "cat", "sleeps", "dog"}
    assert vocabulary(iter(ps), "it") == {"il", "gatto", "dorme", "cane"}
    with pytest.raises(GrammarError):
        vocabulary(ps, "fr")


# --------------------------------------------------------------------------- hand-checked translations


@pytest.mark.parametrize(
    ("args", "en", "it"),
    [
        (dict(noun="cat", adjective="black"), "the black cat", "il gatto nero"),
        (dict(noun="cat", number="pl", adjective="black"), "the black cats", "i gatti neri"),
        (dict(noun="house"), "the house", "la casa"),
        (dict(noun="house", number="pl", adjective="white"), "the white houses", "le case bianche"),
        (dict(noun="house", det="a", adjective="old"), "an old house", "una casa vecchia"),
        (dict(noun="student"), "the student", "lo studente"),
        (dict(noun="student", number="pl"), "the students", "gli studenti"),
        (dict(noun="student", det="a"), "a student", "uno studente"),
        (dict(noun="student", det="that"), "that student", "quello studente"),
        (dict(noun="students", det="that", number="pl"), "those students", "quegli studenti"),
        (dict(noun="dog", det="that", number="pl"), "those dogs", "quei cani"),
        (dict(noun="student", det="some", number="pl"), "some students", "degli studenti"),
        (dict(noun="backpack", det="all the", number="pl"), "all the backpacks", "tutti gli zaini"),
        (dict(noun="ball", det="my", adjective="red"), "my red ball", "la mia palla rossa"),
        (dict(noun="hat", det="my", number="pl"), "my hats", "i miei cappelli"),
        (dict(noun="book", det="their", number="pl"), "their books", "i loro libri"),
        (dict(noun="student", det="his"), "his student", "il suo studente"),
        (dict(noun="king", det="every"), "every king", "ogni re"),
        (dict(noun="king", number="pl"), "the kings", "i re"),
        (dict(noun="cow", det="two", number="pl", adjective="tired"), "two tired cows", "due mucche stanche"),
        (dict(noun="table", prep="on"), "on the table", "sul tavolo"),
        (dict(noun="shelf", prep="on"), "on the shelf", "sullo scaffale"),
        (dict(noun="table", det="my", prep="on"), "on my table", "sul mio tavolo"),
        (dict(noun="house", prep="in"), "in the house", "nella casa"),
        (dict(noun="house", det="a", prep="in"), "in a house", "in una casa"),
        (dict(noun="stadium", prep="in"), "in the stadium", "nello stadio"),
        (dict(noun="girl", number="pl", prep="to"), "to the girls", "alle ragazze"),
        (dict(noun="student", number="pl", prep="to"), "to the students", "agli studenti"),
        (dict(noun="park", prep="from"), "from the park", "dal parco"),
        (dict(noun="table", prep="near"), "near the table", "vicino al tavolo"),
        (dict(noun="school", prep="in front of"), "in front of the school", "davanti alla scuola"),
        (dict(noun="shelf", prep="under"), "under the shelf", "sotto lo scaffale"),
        (dict(noun="dog", prep="with"), "with the dog", "con il cane"),
    ],
)
def test_translate_np(args: dict, en: str, it: str) -> None:
    assert translate_np(**args) == SentencePair(en, it)


@pytest.mark.parametrize(
    ("args", "kwargs", "en", "it"),
    [
        (("she", "see", "him"), {}, "she sees him", "lei lo vede"),
        (("she", "see", "him"), {"polarity": "neg"}, "she does not see him", "lei non lo vede"),
        (("they", "see", "her"), {"polarity": "never"}, "they never see her", "loro non la vedono mai"),
        (("i", "call", "them"), {"polarity": "often"}, "i often call them", "io li chiamo spesso"),
        (
            ("he", "read", NP("book")),
            {"polarity": "often"},
            "he often reads the book",
            "lui legge spesso il libro",
        ),
        (
            (NP("girl"), "look for", NP("key", number="pl")),
            {},
            "the girl looks for the keys",
            "la ragazza cerca le chiavi",
        ),
        (
            (NP("cat", adjective="black"), "see", NP("dog", det="a", adjective="small")),
            {},
            "the black cat sees a small dog",
            "il gatto nero vede un cane piccolo",
        ),
        (("she", "see", "him"), {"modal": "want"}, "she wants to see him", "lei vuole vederlo"),
        (
            ("we", "know", "you"),
            {"modal": "want", "polarity": "neg"},
            "we do not want to know you",
            "noi non vogliamo conoscerti",
        ),
        (
            ("i", "see", "her"),
            {"modal": "can", "polarity": "neg"},
            "i cannot see her",
            "io non posso vederla",
        ),
        (
            ("you", "read", NP("letter")),
            {"final": "every day"},
            "you read the letter every day",
            "tu leggi la lettera ogni giorno",
        ),
    ],
)
def test_translate_clause_transitive(args: tuple, kwargs: dict, en: str, it: str) -> None:
    assert translate_clause(*args, **kwargs) == SentencePair(en, it)


def test_translate_clause_other_constructions() -> None:
    give = translate_clause("she", "give", NP("book"), recipient="him")
    assert give == SentencePair("she gives him the book", "lei gli dà il libro")
    give_np = translate_clause(NP("boy"), "give", NP("apple"), recipient=NP("horse"))
    assert give_np == SentencePair("the boy gives the apple to the horse", "il ragazzo dà la mela al cavallo")
    neg_give = translate_clause("we", "send", NP("letter", det="a"), recipient="her", polarity="neg")
    assert neg_give == SentencePair("we do not send her a letter", "noi non le mandiamo una lettera")

    assert translate_clause(NP("cat", number="pl"), "be", adjective="black") == SentencePair(
        "the cats are black", "i gatti sono neri"
    )
    assert translate_clause("she", "be", adjective="tired") == SentencePair("she is tired", "lei è stanca")
    assert translate_clause(NP("girl", number="pl"), "be", adjective="tired", polarity="neg") == SentencePair(
        "the girls are not tired", "le ragazze non sono stanche"
    )
    assert translate_clause("i", "be", pp=("in", NP("kitchen"))) == SentencePair(
        "i am in the kitchen", "io sono nella cucina"
    )

    assert translate_clause("we", "go", pp=("to", NP("park"))) == SentencePair(
        "we go to the park", "noi andiamo al parco"
    )
    assert translate_clause(NP("student", number="pl"), "come", pp=("from", NP("station"))) == SentencePair(
        "the students come from the station", "gli studenti vengono dalla stazione"
    )
    assert translate_clause(NP("child", number="pl"), "sleep", pp=("on", NP("bed"))) == SentencePair(
        "the children sleep on the bed", "i bambini dormono sul letto"
    )
    assert translate_clause("she", "play", pp=("with", "him")) == SentencePair(
        "she plays with him", "lei gioca con lui"
    )
    assert translate_clause("he", "study", pp=("in", NP("library")), final="every day") == SentencePair(
        "he studies in the library every day", "lui studia nella biblioteca ogni giorno"
    )

    with pytest.raises(GrammarError):
        translate_clause("she", "fly", "him")
    with pytest.raises(GrammarError):
        translate_np("unicorn")


# --------------------------------------------------------------------------- word order over generated data


def _adj_noun_forms() -> tuple[dict[str, list[tuple[str, ...]]], set[str], set[str]]:
    """EN (adj, noun) bigram -> possible IT (noun, adj) bigrams; sets of IT noun/adj forms."""
    nouns = [n for c in lexicon.CATEGORIES for n in lexicon.NOUNS[c]]
    table: dict[str, list[tuple[str, ...]]] = {}
    for a in lexicon.ADJECTIVES:
        for n in nouns:
            for number in ("sg", "pl"):
                key = f"{a.en} {n.en(number)}"
                table.setdefault(key, []).append((n.it(number), a.it(n.gender, number)))
    it_nouns = {w for n in nouns for w in (n.it_sg, n.it_pl)}
    it_adjs = {f for a in lexicon.ADJECTIVES for f in a.forms}
    return table, it_nouns, it_adjs


def test_adjective_follows_noun_in_italian(pairs: list[SentencePair]) -> None:
    table, it_nouns, it_adjs = _adj_noun_forms()
    verbs = {f for v in lexicon.TRANSITIVE + lexicon.INTRANSITIVE for f in v.forms}
    checked = 0
    for p in pairs:
        en = p.en.split()
        it = p.it.split()
        it_bigrams = set(zip(it, it[1:], strict=False))
        for bigram in zip(en, en[1:], strict=False):
            options = table.get(" ".join(bigram))
            if options is None:
                continue
            checked += 1
            # English adjective-noun -> Italian noun immediately followed by the agreeing adjective
            assert any(o in it_bigrams for o in options), (p, bigram)
        # an adjective never directly precedes a noun in Italian ("cucina" is also a verb form)
        for w1, w2 in zip(it, it[1:], strict=False):
            assert not (w1 in it_adjs and w2 in it_nouns and w2 not in verbs and w1 not in it_nouns), p
    assert checked > 3000


def test_clitic_before_finite_verb(pairs: list[SentencePair]) -> None:
    finite = {f for v in lexicon.TRANSITIVE + lexicon.DITRANSITIVE for f in v.forms}
    found = 0
    for p in pairs:
        en, it = p.en.split(), p.it.split()
        if (
            len(en) == 3
            and en[0] in ("i", "you", "he", "she", "we", "they")
            and en[2] in ("me", "you", "him", "her", "us", "them")
        ):
            # pronoun subject, verb, pronoun object -> subject, clitic, verb
            found += 1
            assert it[1] in ("mi", "ti", "lo", "la", "ci", "li"), p
            assert it[2] in finite, p
    assert found > 20


def test_relative_and_coordination_present(pairs: list[SentencePair]) -> None:
    rel = [p for p in pairs if " who " in f" {p.en} "]
    assert rel and all(" che " in f" {p.it} " for p in rel)
    coord = [p for p in pairs if " and " in f" {p.en} "]
    assert coord and all(" e " in f" {p.it} " for p in coord)
