"""Deterministic English -> Italian synthetic sentence generator.

The corpus is meant to be spoken by a speech synthesiser and learned by very small
speech-recognition / speech-translation models, so the language is regular and the
vocabulary modest, but the Italian is grammatical and systematically reorders words
with respect to the English source:

* adjectives follow the noun (``the black cat`` -> ``il gatto nero``);
* object clitics precede the finite verb (``she sees him`` -> ``lei lo vede``) and
  attach to infinitives (``she wants to see him`` -> ``lei vuole vederlo``);
* indirect-object clitics replace the English double-object construction
  (``she gives him the book`` -> ``lei gli dà il libro``);
* frequency adverbs follow the Italian finite verb (``he often reads the book`` ->
  ``lui legge spesso il libro``), ``never`` becomes ``non ... mai``;
* possessives take an article (``my red ball`` -> ``la mia palla rossa``);
* prepositions fuse with the definite article (``on the table`` -> ``sul tavolo``,
  ``in the stadium`` -> ``nello stadio``, ``to the girls`` -> ``alle ragazze``);
* articles, demonstratives, quantifiers, adjectives and verbs agree in gender,
  number and person.

Only the present tense is used.  Output is lowercase, without punctuation or digits,
with one word per whitespace-separated token; no Italian noun starts with a vowel and
no Italian verb starts with a vowel, so elision (``l'``, ``un'``, ``dell'``) never occurs.

Generation only iterates over lists and tuples (never sets), and all randomness comes
from a private :class:`random.Random`, so results do not depend on ``PYTHONHASHSEED``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "SentencePair",
    "GrammarError",
    "NP",
    "sentence_space",
    "lexicon_words",
    "lexicon_size",
    "generate_pairs",
    "vocabulary",
    "translate_np",
    "translate_clause",
]


@dataclass(frozen=True)
class SentencePair:
    """An English sentence and its Italian translation (lowercase, space separated)."""

    en: str
    it: str


class GrammarError(ValueError):
    """Raised for invalid arguments or when the requested pairs cannot be produced."""


@dataclass(frozen=True)
class NP:
    """A noun-phrase specification for :func:`translate_np` / :func:`translate_clause`.

    ``noun`` and ``adjective`` are English lemmas of the lexicon (e.g. ``"cat"``,
    ``"black"``), ``det`` one of the determiner keys (``"the"``, ``"a"``, ``"this"``,
    ``"that"``, ``"my"``, ``"your"``, ``"his"``, ``"our"``, ``"their"``, ``"some"``,
    ``"many"``, ``"all the"``, ``"every"``, ``"two"``, ``"three"``, ``"four"``) and
    ``number`` ``"sg"`` or ``"pl"``.
    """

    noun: str
    det: str = "the"
    number: str = "sg"
    adjective: str | None = None


_VOWELS = "aeiouàèéìòù"


PERSON, ANIMAL, THING, FOOD, TEXT, PLACE, FURNITURE = (
    "person",
    "animal",
    "thing",
    "food",
    "text",
    "place",
    "furniture",
)


_CATEGORIES: tuple[str, ...] = (PERSON, ANIMAL, THING, FOOD, TEXT, PLACE, FURNITURE)


_ANIMATE = (PERSON, ANIMAL)


_ALL = _CATEGORIES


@dataclass(frozen=True)
class _Noun:
    en_sg: str
    en_pl: str
    it_sg: str
    it_pl: str
    gender: str  # "m" | "f"
    cat: str

    def en(self, number: str) -> str:
        return self.en_sg if number == "sg" else self.en_pl

    def it(self, number: str) -> str:
        return self.it_sg if number == "sg" else self.it_pl


@dataclass(frozen=True)
class _Adj:
    en: str
    forms: tuple[str, str, str, str]  # masc sg, fem sg, masc pl, fem pl
    cats: tuple[str, ...]

    def it(self, gender: str, number: str) -> str:
        return self.forms[(0 if gender == "m" else 1) + (0 if number == "sg" else 2)]


@dataclass(frozen=True)
class _Verb:
    en: tuple[str, ...]  # base form, possibly with a particle ("look", "for")
    en_s: str  # third person singular of the first word
    inf: str  # Italian infinitive
    forms: tuple[str, str, str, str, str]  # io, tu, lui/lei, noi, loro
    subj: tuple[str, ...] = _ANIMATE
    obj: tuple[str, ...] = ()
    dat: tuple[str, ...] = ()
    locs: tuple[str, ...] = ()
    comit: bool = False
    dirs: tuple[str, ...] = ()  # motion prepositions ("to", "from")
    stative: bool = False  # no manner adverbs ("knows him quickly")

    def en_finite(self, person: int) -> tuple[str, ...]:
        return ((self.en_s,) if person == 2 else (self.en[0],)) + self.en[1:]


@dataclass(frozen=True)
class _Adv:
    en: tuple[str, ...]
    it: tuple[str, ...]


@dataclass(frozen=True)
class _Pron:
    person: int  # index into the 5 conjugated persons: 1sg 2sg 3sg 1pl 3pl
    gender: str
    en_subj: str
    en_obj: str
    it_subj: str
    it_acc: str  # direct-object clitic
    it_dat: str  # indirect-object clitic
    it_str: str  # stressed form (after prepositions)

    @property
    def number(self) -> str:
        return "sg" if self.person < 3 else "pl"


@dataclass(frozen=True)
class _Det:
    key: str
    en_sg: tuple[str, ...] | None
    en_pl: tuple[str, ...] | None

    @property
    def numbers(self) -> tuple[str, ...]:
        return tuple(n for n, w in (("sg", self.en_sg), ("pl", self.en_pl)) if w is not None)


@dataclass(frozen=True)
class _Prep:
    en: tuple[str, ...]
    it: tuple[str, ...]
    fuse: str | None  # Italian preposition that fuses with a following definite article


def _en_s(word: str) -> str:
    if word.endswith(("s", "sh", "ch", "x", "z", "o")):
        return word + "es"
    if word.endswith("y") and word[-2] not in _VOWELS:
        return word[:-1] + "ies"
    return word + "s"


def _are(inf: str) -> tuple[str, str, str, str, str]:
    stem = inf[:-3]
    if stem.endswith(("c", "g")):
        tu, noi = stem + "hi", stem + "hiamo"
    elif stem.endswith("i"):
        tu, noi = stem, stem + "amo"
    else:
        tu, noi = stem + "i", stem + "iamo"
    return (stem + "o", tu, stem + "a", noi, stem + "ano")


def _ere(inf: str) -> tuple[str, str, str, str, str]:
    stem = inf[:-3]
    return (stem + "o", stem + "i", stem + "e", stem + "iamo", stem + "ono")


def _ire(inf: str, isc: bool = False) -> tuple[str, str, str, str, str]:
    stem = inf[:-3]
    if isc:
        return (stem + "isco", stem + "isci", stem + "isce", stem + "iamo", stem + "iscono")
    return (stem + "o", stem + "i", stem + "e", stem + "iamo", stem + "ono")


def _regular(inf: str) -> tuple[str, str, str, str, str]:
    return {"are": _are, "ere": _ere, "ire": _ire}[inf[-3:]](inf)


def _v(en: str, inf: str, forms: tuple[str, str, str, str, str] | None = None, **kw) -> _Verb:
    words = tuple(en.split())
    return _Verb(words, _en_s(words[0]), inf, forms or _regular(inf), **kw)


def _o(ms: str) -> tuple[str, str, str, str]:
    """Adjective in -o with regular four forms (nero nera neri nere)."""
    stem = ms[:-1]
    if ms.endswith("io"):
        return (ms, stem + "a", stem, stem + "e")
    if ms.endswith(("co", "go")):
        return (ms, stem + "a", stem + "hi", stem + "he")
    return (ms, stem + "a", stem + "i", stem + "e")


def _e(s: str) -> tuple[str, str, str, str]:
    """Adjective in -e, two forms (grande grandi)."""
    return (s, s, s[:-1] + "i", s[:-1] + "i")


def _inv(s: str) -> tuple[str, str, str, str]:
    return (s, s, s, s)


def _n(cat: str, entries: Sequence[tuple[str, str, str, str, str]]) -> tuple[_Noun, ...]:
    return tuple(_Noun(a, b, c, d, g, cat) for a, b, c, d, g in entries)


# Each class is ordered so that its first two entries keep every construction usable
# (one masculine and one feminine noun, broadly applicable adjectives and verbs).
_NOUNS: dict[str, tuple[_Noun, ...]] = {
    PERSON: _n(
        PERSON,
        [
            ("boy", "boys", "ragazzo", "ragazzi", "m"),
            ("girl", "girls", "ragazza", "ragazze", "f"),
            ("child", "children", "bambino", "bambini", "m"),
            ("woman", "women", "donna", "donne", "f"),
            ("student", "students", "studente", "studenti", "m"),
            ("teacher", "teachers", "maestra", "maestre", "f"),
            ("doctor", "doctors", "dottore", "dottori", "m"),
            ("queen", "queens", "regina", "regine", "f"),
            ("king", "kings", "re", "re", "m"),
            ("lady", "ladies", "signora", "signore", "f"),
            ("cook", "cooks", "cuoco", "cuochi", "m"),
            ("writer", "writers", "scrittore", "scrittori", "m"),
        ],
    ),
    ANIMAL: _n(
        ANIMAL,
        [
            ("cat", "cats", "gatto", "gatti", "m"),
            ("cow", "cows", "mucca", "mucche", "f"),
            ("dog", "dogs", "cane", "cani", "m"),
            ("horse", "horses", "cavallo", "cavalli", "m"),
            ("fox", "foxes", "volpe", "volpi", "f"),
            ("mouse", "mice", "topo", "topi", "m"),
            ("wolf", "wolves", "lupo", "lupi", "m"),
            ("rabbit", "rabbits", "coniglio", "conigli", "m"),
            ("squirrel", "squirrels", "scoiattolo", "scoiattoli", "m"),
        ],
    ),
    THING: _n(
        THING,
        [
            ("ball", "balls", "palla", "palle", "f"),
            ("hat", "hats", "cappello", "cappelli", "m"),
            ("key", "keys", "chiave", "chiavi", "f"),
            ("gift", "gifts", "regalo", "regali", "m"),
            ("box", "boxes", "scatola", "scatole", "f"),
            ("phone", "phones", "telefono", "telefoni", "m"),
            ("cup", "cups", "tazza", "tazze", "f"),
            ("backpack", "backpacks", "zaino", "zaini", "m"),
            ("bag", "bags", "borsa", "borse", "f"),
            ("mirror", "mirrors", "specchio", "specchi", "m"),
            ("bottle", "bottles", "bottiglia", "bottiglie", "f"),
        ],
    ),
    FOOD: _n(
        FOOD,
        [
            ("apple", "apples", "mela", "mele", "f"),
            ("sandwich", "sandwiches", "panino", "panini", "m"),
            ("cake", "cakes", "torta", "torte", "f"),
            ("cookie", "cookies", "biscotto", "biscotti", "m"),
            ("pear", "pears", "pera", "pere", "f"),
            ("tomato", "tomatoes", "pomodoro", "pomodori", "m"),
            ("strawberry", "strawberries", "fragola", "fragole", "f"),
        ],
    ),
    TEXT: _n(
        TEXT,
        [
            ("book", "books", "libro", "libri", "m"),
            ("letter", "letters", "lettera", "lettere", "f"),
            ("newspaper", "newspapers", "giornale", "giornali", "m"),
            ("story", "stories", "storia", "storie", "f"),
            ("poem", "poems", "poesia", "poesie", "f"),
        ],
    ),
    PLACE: _n(
        PLACE,
        [
            ("house", "houses", "casa", "case", "f"),
            ("garden", "gardens", "giardino", "giardini", "m"),
            ("park", "parks", "parco", "parchi", "m"),
            ("kitchen", "kitchens", "cucina", "cucine", "f"),
            ("school", "schools", "scuola", "scuole", "f"),
            ("shop", "shops", "negozio", "negozi", "m"),
            ("city", "cities", "città", "città", "f"),
            ("stadium", "stadiums", "stadio", "stadi", "m"),
            ("station", "stations", "stazione", "stazioni", "f"),
            ("forest", "forests", "bosco", "boschi", "m"),
            ("library", "libraries", "biblioteca", "biblioteche", "f"),
            ("market", "markets", "mercato", "mercati", "m"),
        ],
    ),
    FURNITURE: _n(
        FURNITURE,
        [
            ("table", "tables", "tavolo", "tavoli", "m"),
            ("chair", "chairs", "sedia", "sedie", "f"),
            ("bed", "beds", "letto", "letti", "m"),
            ("sofa", "sofas", "divano", "divani", "m"),
            ("shelf", "shelves", "scaffale", "scaffali", "m"),
            ("floor", "floors", "pavimento", "pavimenti", "m"),
        ],
    ),
}


_OBJECTS = (THING, TEXT, FURNITURE)


_ADJECTIVES: tuple[_Adj, ...] = (
    _Adj("big", _e("grande"), _ALL),
    _Adj("small", _o("piccolo"), _ALL),
    _Adj("old", _o("vecchio"), (PERSON, ANIMAL, THING, TEXT, PLACE, FURNITURE)),
    _Adj("new", _o("nuovo"), (THING, TEXT, PLACE, FURNITURE)),
    _Adj("black", _o("nero"), (ANIMAL, THING, TEXT, FURNITURE)),
    _Adj("white", _o("bianco"), (ANIMAL, THING, TEXT, PLACE, FURNITURE)),
    _Adj("red", _o("rosso"), (THING, FOOD, TEXT, PLACE, FURNITURE)),
    _Adj("green", _e("verde"), (THING, FOOD, TEXT, FURNITURE)),
    _Adj("yellow", _o("giallo"), (THING, FOOD, TEXT, FURNITURE)),
    _Adj("blue", _inv("blu"), (THING, TEXT, FURNITURE)),
    _Adj("brown", _e("marrone"), (ANIMAL, THING, FURNITURE)),
    _Adj("beautiful", _o("bello"), _ALL),
    _Adj("ugly", _o("brutto"), _ALL),
    _Adj("young", _e("giovane"), _ANIMATE),
    _Adj("happy", _e("felice"), _ANIMATE),
    _Adj("sad", _e("triste"), _ANIMATE),
    _Adj("tired", _o("stanco"), _ANIMATE),
    _Adj("hungry", _o("affamato"), _ANIMATE),
    _Adj("angry", _o("arrabbiato"), _ANIMATE),
    _Adj("clever", _e("intelligente"), _ANIMATE),
    _Adj("brave", _o("coraggioso"), _ANIMATE),
    _Adj("fast", _e("veloce"), _ANIMATE),
    _Adj("kind", _e("gentile"), (PERSON,)),
    _Adj("rich", _o("ricco"), (PERSON,)),
    _Adj("famous", _o("famoso"), (PERSON, TEXT, PLACE)),
    _Adj("interesting", _e("interessante"), (PERSON, TEXT, PLACE)),
    _Adj("heavy", _e("pesante"), _OBJECTS),
    _Adj("empty", _o("vuoto"), (THING, PLACE)),
    _Adj("broken", _o("rotto"), (THING, FURNITURE)),
    _Adj("clean", _o("pulito"), (THING, FURNITURE, PLACE)),
    _Adj("dirty", _o("sporco"), (ANIMAL, THING, FURNITURE, PLACE)),
    _Adj("expensive", _o("costoso"), (THING, FOOD, FURNITURE)),
    _Adj("long", _o("lungo"), (TEXT, FURNITURE)),
    _Adj("sweet", _e("dolce"), (FOOD,)),
    _Adj("fresh", _o("fresco"), (FOOD,)),
    _Adj("delicious", _o("delizioso"), (FOOD,)),
)


_CONCRETE = (PERSON, ANIMAL, THING, FOOD, TEXT)


_TRANSITIVE: tuple[_Verb, ...] = (
    _v("see", "vedere", obj=_ALL, stative=True),
    _v("find", "trovare", obj=_CONCRETE),
    _v("look for", "cercare", obj=_CONCRETE),
    _v("call", "chiamare", subj=(PERSON,), obj=_ANIMATE),
    _v("follow", "seguire", obj=_ANIMATE),
    _v("know", "conoscere", subj=(PERSON,), obj=(PERSON, ANIMAL, PLACE), stative=True),
    _v("hear", "sentire", obj=_ANIMATE, stative=True),
    _v("visit", "visitare", subj=(PERSON,), obj=(PERSON, PLACE)),
    _v("buy", "comprare", subj=(PERSON,), obj=(THING, FOOD, TEXT, FURNITURE)),
    _v("read", "leggere", subj=(PERSON,), obj=(TEXT,)),
    _v("write", "scrivere", subj=(PERSON,), obj=(TEXT,)),
    _v("eat", "mangiare", obj=(FOOD,)),
    _v("cook", "cucinare", subj=(PERSON,), obj=(FOOD,)),
    _v("wash", "lavare", subj=(PERSON,), obj=(ANIMAL, THING, FURNITURE)),
    _v("break", "rompere", obj=(THING, FURNITURE)),
    _v("clean", "pulire", _ire("pulire", isc=True), subj=(PERSON,), obj=(THING, FURNITURE, PLACE)),
)


_DITRANSITIVE: tuple[_Verb, ...] = (
    _v(
        "give",
        "dare",
        ("do", "dai", "dà", "diamo", "danno"),
        subj=(PERSON,),
        obj=(THING, FOOD, TEXT),
        dat=_ANIMATE,
    ),
    _v("show", "mostrare", subj=(PERSON,), obj=(ANIMAL, THING, TEXT), dat=(PERSON,)),
    _v("send", "mandare", subj=(PERSON,), obj=(THING, TEXT), dat=(PERSON,)),
    _v("bring", "portare", subj=(PERSON,), obj=(THING, FOOD, TEXT), dat=_ANIMATE),
    _v("sell", "vendere", subj=(PERSON,), obj=(ANIMAL, THING, FOOD, TEXT, FURNITURE), dat=(PERSON,)),
    _v("throw", "lanciare", subj=(PERSON,), obj=(THING, FOOD), dat=_ANIMATE),
)


_INTRANSITIVE: tuple[_Verb, ...] = (
    _v("play", "giocare", locs=(PLACE, FURNITURE), comit=True),
    _v("sleep", "dormire", locs=(FURNITURE, PLACE)),
    _v("run", "correre", locs=(PLACE,), comit=True),
    _v("work", "lavorare", subj=(PERSON,), locs=(PLACE,), comit=True),
    _v("walk", "camminare", locs=(PLACE,), comit=True),
    _v("talk", "parlare", subj=(PERSON,), locs=(PLACE,), comit=True),
    _v("eat", "mangiare", locs=(PLACE, FURNITURE), comit=True),
    _v("read", "leggere", subj=(PERSON,), locs=(PLACE, FURNITURE)),
    _v("sing", "cantare", subj=(PERSON,), locs=(PLACE,), comit=True),
    _v("dance", "ballare", subj=(PERSON,), locs=(PLACE,), comit=True),
    _v("study", "studiare", subj=(PERSON,), locs=(PLACE,), comit=True),
    _v("live", "vivere", locs=(PLACE,), comit=True, stative=True),
)


_MOTION: tuple[_Verb, ...] = (
    _v("go", "andare", ("vado", "vai", "va", "andiamo", "vanno"), dirs=("to",)),
    _v("come", "venire", ("vengo", "vieni", "viene", "veniamo", "vengono"), dirs=("to", "from")),
    _v("return", "tornare", dirs=("to", "from")),
)


_WANT = _v("want", "volere", ("voglio", "vuoi", "vuole", "vogliamo", "vogliono"))


_CAN = _Verb(("can",), "can", "potere", ("posso", "puoi", "può", "possiamo", "possono"))


_MODALS = (_WANT, _CAN)


_BE_EN = ("am", "are", "is", "are", "are")


_BE_IT = ("sono", "sei", "è", "siamo", "sono")


def _adv(en: str, it: str) -> _Adv:
    return _Adv(tuple(en.split()), tuple(it.split()))


# frequency adverbs: before the verb in English, after the finite verb in Italian
_FREQ = (
    _adv("often", "spesso"),
    _adv("always", "sempre"),
    _adv("rarely", "raramente"),
    _adv("still", "ancora"),
)


# manner and time adverbials: sentence final in both languages
_MANNER = (
    _adv("slowly", "lentamente"),
    _adv("quickly", "velocemente"),
    _adv("well", "bene"),
    _adv("quietly", "silenziosamente"),
)


_TIME = (
    _adv("today", "oggi"),
    _adv("now", "adesso"),
    _adv("every day", "ogni giorno"),
    _adv("at night", "di notte"),
)


_PRONOUNS: tuple[_Pron, ...] = (
    _Pron(0, "m", "i", "me", "io", "mi", "mi", "me"),
    _Pron(1, "m", "you", "you", "tu", "ti", "ti", "te"),
    _Pron(2, "m", "he", "him", "lui", "lo", "gli", "lui"),
    _Pron(2, "f", "she", "her", "lei", "la", "le", "lei"),
    _Pron(3, "m", "we", "us", "noi", "ci", "ci", "noi"),
    _Pron(4, "m", "they", "them", "loro", "li", "gli", "loro"),
)


_PRON_BY_EN = {p.en_subj: p for p in _PRONOUNS} | {p.en_obj: p for p in _PRONOUNS}


# pairs (subject person, object person) that would need a reflexive: excluded
_REFLEXIVE = ((0, 0), (1, 1), (3, 3), (0, 3), (3, 0))


_DETS: tuple[_Det, ...] = (
    _Det("the", ("the",), ("the",)),
    _Det("a", ("a",), None),
    _Det("this", ("this",), ("these",)),
    _Det("that", ("that",), ("those",)),
    _Det("my", ("my",), ("my",)),
    _Det("your", ("your",), ("your",)),
    _Det("his", ("his",), ("his",)),
    _Det("our", ("our",), ("our",)),
    _Det("their", ("their",), ("their",)),
    _Det("some", None, ("some",)),
    _Det("many", None, ("many",)),
    _Det("all the", None, ("all", "the")),
    _Det("every", ("every",), None),
    _Det("two", None, ("two",)),
    _Det("three", None, ("three",)),
    _Det("four", None, ("four",)),
)


_DET_BY_KEY = {d.key: d for d in _DETS}


_POSSESSIVES = {
    "my": ("mio", "mia", "miei", "mie"),
    "your": ("tuo", "tua", "tuoi", "tue"),
    "his": ("suo", "sua", "suoi", "sue"),
    "our": _o("nostro"),
    "their": _inv("loro"),
}


_NUMERALS = {"two": "due", "three": "tre", "four": "quattro"}


_DET_WEIGHTS = {"the": 6.0, "a": 3.0}


# noun-phrase roles: which determiners and numbers are allowed
_ROLE_CORE = "core"  # subjects and direct objects


_ROLE_LOC = "loc"  # locative and directional prepositional phrases (singular)


_ROLE_OBL = "obl"  # recipients and companions


_ROLE_DETS: dict[str, tuple[_Det, ...]] = {
    _ROLE_CORE: _DETS,
    _ROLE_LOC: tuple(
        _DET_BY_KEY[k] for k in ("the", "a", "this", "that", "my", "your", "his", "our", "their")
    ),
    _ROLE_OBL: tuple(
        _DET_BY_KEY[k] for k in ("the", "a", "this", "that", "my", "your", "his", "our", "their")
    ),
}


_ROLE_NUMBERS = {_ROLE_CORE: ("sg", "pl"), _ROLE_LOC: ("sg",), _ROLE_OBL: ("sg", "pl")}


_PREPS: dict[str, _Prep] = {
    "on": _Prep(("on",), ("su",), "su"),
    "under": _Prep(("under",), ("sotto",), None),
    "near": _Prep(("near",), ("vicino", "a"), "a"),
    "behind": _Prep(("behind",), ("dietro",), None),
    "in": _Prep(("in",), ("in",), "in"),
    "in front of": _Prep(("in", "front", "of"), ("davanti", "a"), "a"),
    "to": _Prep(("to",), ("a",), "a"),
    "from": _Prep(("from",), ("da",), "da"),
    "with": _Prep(("with",), ("con",), None),
}


_LOC_PREPS: dict[str, tuple[str, ...]] = {
    FURNITURE: ("on", "under", "near", "behind"),
    PLACE: ("in", "near", "behind", "in front of"),
}


_LOCATED = (PERSON, ANIMAL, THING, FOOD, TEXT)  # what can be "on the table" / "in the house"


_FUSE_PREFIX = {"di": "de", "a": "a", "da": "da", "in": "ne", "su": "su"}


_FUSE_SUFFIX = {"il": "l", "lo": "llo", "la": "lla", "i": "i", "gli": "gli", "le": "lle"}


MAX_WORDS = 12


MIN_WORDS = 3


def _lo_onset(word: str) -> bool:
    """True when a masculine word takes lo/gli/uno (s+consonant, z, gn, ps, pn, x, y)."""
    if word[0] in _VOWELS:
        raise GrammarError(f"vowel-initial word {word!r} would need elision")
    return (
        word[0] in "zxy"
        or word.startswith(("gn", "ps", "pn"))
        or (word[0] == "s" and len(word) > 1 and word[1] not in _VOWELS)
    )


def _article(gender: str, number: str, nxt: str) -> str:
    if gender == "f":
        return "la" if number == "sg" else "le"
    lo = _lo_onset(nxt)
    if number == "sg":
        return "lo" if lo else "il"
    return "gli" if lo else "i"


def _fuse(prep: str, article: str) -> str:
    return _FUSE_PREFIX[prep] + _FUSE_SUFFIX[article]


def _it_det(det: str, gender: str, number: str, nxt: str) -> tuple[list[str], bool]:
    """Italian determiner tokens before ``nxt``; flag: first token is a definite article."""
    f, sg = gender == "f", number == "sg"
    if det == "the":
        return [_article(gender, number, nxt)], True
    if det in _POSSESSIVES:
        poss = _POSSESSIVES[det][(1 if f else 0) + (0 if sg else 2)]
        return [_article(gender, number, poss), poss], True
    if det == "a":
        return ["una" if f else ("uno" if _lo_onset(nxt) else "un")], False
    if det == "this":
        return [("questa" if f else "questo") if sg else ("queste" if f else "questi")], False
    if det == "that":
        if f:
            return ["quella" if sg else "quelle"], False
        lo = _lo_onset(nxt)
        return [("quello" if lo else "quel") if sg else ("quegli" if lo else "quei")], False
    if det == "some":
        return [_fuse("di", _article(gender, number, nxt))], False
    if det == "many":
        return ["molte" if f else "molti"], False
    if det == "all the":
        return ["tutte" if f else "tutti", _article(gender, number, nxt)], False
    if det == "every":
        return ["ogni"], False
    if det in _NUMERALS:
        return [_NUMERALS[det]], False
    raise GrammarError(f"unknown determiner {det!r}")


def _en_det(det: _Det, number: str, nxt: str) -> list[str]:
    words = det.en_sg if number == "sg" else det.en_pl
    if words is None:
        raise GrammarError(f"determiner {det.key!r} cannot be {number}")
    if words == ("a",) and nxt[0] in "aeiou":
        return ["an"]
    return list(words)


def _apply_prep(prep: _Prep | None, det_tokens: list[str], first_is_article: bool) -> list[str]:
    if prep is None:
        return det_tokens
    if prep.fuse is not None and first_is_article:
        return list(prep.it[:-1]) + [_fuse(prep.fuse, det_tokens[0])] + det_tokens[1:]
    return list(prep.it) + det_tokens


@dataclass(frozen=True)
class _NPSpec:
    noun: _Noun
    det: _Det
    number: str
    adj: _Adj | None

    @property
    def person(self) -> int:
        return 2 if self.number == "sg" else 4


_Arg = _NPSpec | _Pron


_Tokens = tuple[list[str], list[str]]


def _np_tokens(spec: _NPSpec, prep: _Prep | None = None) -> _Tokens:
    noun, number, adj = spec.noun, spec.number, spec.adj
    en_first = adj.en if adj is not None else noun.en(number)
    en = ([] if prep is None else list(prep.en)) + _en_det(spec.det, number, en_first)
    if adj is not None:
        en.append(adj.en)
    en.append(noun.en(number))
    it_noun = noun.it(number)
    det_tokens, is_art = _it_det(spec.det.key, noun.gender, number, it_noun)
    it = _apply_prep(prep, det_tokens, is_art) + [it_noun]
    if adj is not None:
        it.append(adj.it(noun.gender, number))
    return en, it


def _pp_tokens(prep_key: str, arg: _Arg) -> _Tokens:
    prep = _PREPS[prep_key]
    if isinstance(arg, _Pron):
        return list(prep.en) + [arg.en_obj], list(prep.it) + [arg.it_str]
    return _np_tokens(arg, prep)


def _subject_tokens(subj: _Arg) -> tuple[list[str], list[str], int, str]:
    if isinstance(subj, _Pron):
        return [subj.en_subj], [subj.it_subj], subj.person, subj.gender
    en, it = _np_tokens(subj)
    return en, it, subj.person, subj.noun.gender


def _infinitive(verb: _Verb, clitic: str | None) -> str:
    return verb.inf if clitic is None else verb.inf[:-1] + clitic


@dataclass(frozen=True)
class _Clause:
    """Everything after the subject: a verb phrase and its complements."""

    kind: str  # "trans" | "ditrans" | "intr" | "motion" | "cop_adj" | "cop_pp"
    verb: _Verb | None = None
    obj: _Arg | None = None
    recipient: _Arg | None = None
    pp: tuple[str, _Arg] | None = None
    adj: _Adj | None = None
    polarity: str | _Adv = "pos"  # "pos" | "neg" | "never" | frequency adverb
    modal: _Verb | None = None
    final: _Adv | None = None


def _vp_tokens(cl: _Clause, person: int, gender: str, number: str) -> _Tokens:
    en: list[str] = []
    it: list[str] = []
    pol = cl.polarity
    neg = pol in ("neg", "never")
    # Italian clitic (direct or indirect object pronoun)
    clitic = None
    if isinstance(cl.obj, _Pron):
        clitic = cl.obj.it_acc
    elif cl.kind == "ditrans" and isinstance(cl.recipient, _Pron):
        clitic = cl.recipient.it_dat

    if cl.kind in ("cop_adj", "cop_pp"):
        en += [_BE_EN[person]] + (["not"] if neg else [])
        it += (["non"] if neg else []) + [_BE_IT[person]]
    elif cl.modal is not None:
        verb = cl.verb
        assert verb is not None
        if cl.modal is _CAN:
            en.append("cannot" if neg else "can")
        elif neg:
            en += ["does" if person == 2 else "do", "not", cl.modal.en[0], "to"]
        else:
            en += list(cl.modal.en_finite(person)) + ["to"]
        en += list(verb.en)
        it += (["non"] if neg else []) + [cl.modal.forms[person], _infinitive(verb, clitic)]
    else:
        verb = cl.verb
        assert verb is not None
        if pol == "neg":
            en += ["does" if person == 2 else "do", "not"] + list(verb.en)
        elif pol == "pos":
            en += list(verb.en_finite(person))
        else:
            en += (["never"] if pol == "never" else list(pol.en)) + list(verb.en_finite(person))
        it += (["non"] if neg else []) + ([clitic] if clitic else []) + [verb.forms[person]]
        if pol == "never":
            it.append("mai")
        elif isinstance(pol, _Adv):
            it += list(pol.it)

    # complements
    if cl.kind == "trans":
        assert cl.obj is not None
        if isinstance(cl.obj, _Pron):
            en.append(cl.obj.en_obj)
        else:
            e, i = _np_tokens(cl.obj)
            en += e
            it += i
    elif cl.kind == "ditrans":
        assert isinstance(cl.obj, _NPSpec) and cl.recipient is not None
        e, i = _np_tokens(cl.obj)
        if isinstance(cl.recipient, _Pron):
            en += [cl.recipient.en_obj] + e
            it += i
        else:
            re_, ri = _np_tokens(cl.recipient, _PREPS["to"])
            en += e + re_
            it += i + ri
    elif cl.kind == "cop_adj":
        assert cl.adj is not None
        en.append(cl.adj.en)
        it.append(cl.adj.it(gender, number))
    if cl.pp is not None:
        e, i = _pp_tokens(*cl.pp)
        en += e
        it += i
    if cl.final is not None:
        en += list(cl.final.en)
        it += list(cl.final.it)
    return en, it


def _sentence(subj: _Arg, cl: _Clause) -> _Tokens:
    se, si, person, gender = _subject_tokens(subj)
    ve, vi = _vp_tokens(cl, person, gender, "sg" if person < 3 else "pl")
    return se + ve, si + vi


def _relative(head: _NPSpec, inner: _Clause, adj: _Adj) -> _Tokens:
    """``the girl who reads the book is happy`` -> ``la ragazza che legge il libro è felice``."""
    he, hi = _np_tokens(head)
    ie, ii = _vp_tokens(inner, head.person, head.noun.gender, head.number)
    pe, pi = _vp_tokens(_Clause("cop_adj", adj=adj), head.person, head.noun.gender, head.number)
    rel = "who" if head.noun.cat == PERSON else "that"
    return he + [rel] + ie + pe, hi + ["che"] + ii + pi


def _coordination(a: _NPSpec, b: _NPSpec, cl: _Clause) -> _Tokens:
    """``the cat and the girl are tired`` -> ``il gatto e la ragazza sono stanchi``."""
    ae, ai = _np_tokens(a)
    be, bi = _np_tokens(b)
    gender = "f" if a.noun.gender == b.noun.gender == "f" else "m"
    ve, vi = _vp_tokens(cl, 4, gender, "pl")
    return ae + ["and"] + be + ve, ai + ["e"] + bi + vi


def _take(items: Sequence, fraction: float) -> tuple:
    k = max(2, math.ceil(round(fraction * len(items), 9)))
    return tuple(items[: min(k, len(items))])


def _check_fraction(fraction: float) -> float:
    try:
        f = float(fraction)
    except (TypeError, ValueError) as exc:
        raise GrammarError(f"lexicon_fraction must be a number, got {fraction!r}") from exc
    if not (0.0 < f <= 1.0) or math.isnan(f):
        raise GrammarError(f"lexicon_fraction must be in (0, 1], got {fraction!r}")
    return f


class _Lexicon:
    """The word classes available at one lexicon fraction (first entries of each class)."""

    def __init__(self, fraction: float) -> None:
        self.nouns = {c: _take(_NOUNS[c], fraction) for c in _CATEGORIES}
        self.adjs = _take(_ADJECTIVES, fraction)
        self.trans = _take(_TRANSITIVE, fraction)
        self.ditrans = _take(_DITRANSITIVE, fraction)
        self.intr = _take(_INTRANSITIVE, fraction)
        self.motion = _take(_MOTION, fraction)
        self.freq = _take(_FREQ, fraction)
        self.manner = _take(_MANNER, fraction)
        self.time = _take(_TIME, fraction)
        self.adjs_by_cat = {c: tuple(a for a in self.adjs if c in a.cats) for c in _CATEGORIES}
        self.comit = tuple(v for v in self.intr if v.comit)
        self.pron_obj_verbs = tuple(v for v in self.trans if PERSON in v.obj)
        self._noun_cache: dict[tuple[str, ...], tuple[_Noun, ...]] = {}

    def nouns_for(self, cats: Sequence[str]) -> tuple[_Noun, ...]:
        key = tuple(cats)
        if key not in self._noun_cache:
            self._noun_cache[key] = tuple(n for c in key for n in self.nouns[c])
        return self._noun_cache[key]

    # -- counting (upper bound on distinct derivations) ------------------------------
    def count_np(self, role: str, cats: Sequence[str], dets: Sequence[_Det] | None = None) -> int:
        nums = _ROLE_NUMBERS[role]
        dets = _ROLE_DETS[role] if dets is None else dets
        n_det = sum(sum(1 for n in d.numbers if n in nums) for d in dets)
        return sum(len(self.nouns[c]) * n_det * (1 + len(self.adjs_by_cat[c])) for c in cats)

    def count_loc(self, cats: Sequence[str]) -> int:
        return sum(len(_LOC_PREPS[c]) * self.count_np(_ROLE_LOC, (c,)) for c in cats)

    def count_subj(self, verb: _Verb) -> int:
        return (len(_PRONOUNS) if PERSON in verb.subj else 0) + self.count_np(_ROLE_CORE, verb.subj)


@lru_cache(maxsize=32)
def _lexicon(fraction: float) -> _Lexicon:
    return _Lexicon(fraction)


class _Sampler:
    def __init__(self, lex: _Lexicon, rng: random.Random) -> None:
        self.lex = lex
        self.rng = rng
        self.templates = (
            (self.t_trans_np, 20.0),
            (self.t_trans_pron, 13.0),
            (self.t_trans_pp, 7.0),
            (self.t_ditrans, 9.0),
            (self.t_intr_pp, 11.0),
            (self.t_comit, 6.0),
            (self.t_motion, 6.0),
            (self.t_cop_adj, 9.0),
            (self.t_cop_pp, 5.0),
            (self.t_modal, 8.0),
            (self.t_relative, 4.0),
            (self.t_coord, 3.0),
        )
        self.funcs = [t for t, _ in self.templates]
        self.weights = [w for _, w in self.templates]

    # -- building blocks --------------------------------------------------------------
    def np(self, role: str, cats: Sequence[str], avoid: _Noun | None = None, p_adj: float = 0.45) -> _NPSpec:
        rng, lex = self.rng, self.lex
        nouns = lex.nouns_for(cats)
        noun = rng.choice(nouns)
        if noun is avoid:
            noun = nouns[(nouns.index(noun) + 1) % len(nouns)]
        dets = _ROLE_DETS[role]
        det = rng.choices(dets, weights=[_DET_WEIGHTS.get(d.key, 1.0) for d in dets])[0]
        nums = [n for n in det.numbers if n in _ROLE_NUMBERS[role]]
        number = nums[0] if len(nums) == 1 else ("sg" if rng.random() < 0.6 else "pl")
        adjs = lex.adjs_by_cat[noun.cat]
        adj = rng.choice(adjs) if adjs and rng.random() < p_adj else None
        return _NPSpec(noun, det, number, adj)

    def pron(self, other: _Pron | None = None) -> _Pron:
        choices = (
            _PRONOUNS
            if other is None
            else tuple(p for p in _PRONOUNS if (other.person, p.person) not in _REFLEXIVE)
        )
        return self.rng.choice(choices)

    def subject(self, verb_subj: Sequence[str], p_pron: float = 0.35) -> _Arg:
        if PERSON in verb_subj and self.rng.random() < p_pron:
            return self.pron()
        return self.np(_ROLE_CORE, verb_subj)

    def polarity(self, p_pos: float = 0.55) -> str | _Adv:
        r = self.rng.random()
        if r < p_pos:
            return "pos"
        if r < p_pos + 0.2:
            return "neg"
        if r < p_pos + 0.27:
            return "never"
        return self.rng.choice(self.lex.freq)

    def final(self, verb: _Verb, pol: str | _Adv = "pos", p: float = 0.25) -> _Adv | None:
        """Optional sentence-final adverbial: manner adverbs only with non-stative verbs,
        time adverbials only without a frequency adverb or "never"."""
        if self.rng.random() >= p:
            return None
        pool = () if verb.stative or verb.dirs else self.lex.manner
        if pol in ("pos", "neg"):
            pool += self.lex.time
        return self.rng.choice(pool) if pool else None

    def loc(self, cats: Sequence[str]) -> tuple[str, _NPSpec]:
        cat = self.rng.choice(cats)
        prep = self.rng.choice(_LOC_PREPS[cat])
        return prep, self.np(_ROLE_LOC, (cat,), p_adj=0.3)

    def obj_arg(self, verb: _Verb, subj: _Arg) -> _Arg:
        avoid = subj.noun if isinstance(subj, _NPSpec) else None
        if PERSON in verb.obj and self.rng.random() < 0.3:
            return self.pron(subj if isinstance(subj, _Pron) else None)
        return self.np(_ROLE_CORE, verb.obj, avoid=avoid)

    # -- templates --------------------------------------------------------------------
    def t_trans_np(self) -> _Tokens:
        v = self.rng.choice(self.lex.trans)
        s = self.subject(v.subj)
        o = self.np(_ROLE_CORE, v.obj, avoid=s.noun if isinstance(s, _NPSpec) else None)
        pol = self.polarity()
        return _sentence(s, _Clause("trans", v, obj=o, polarity=pol, final=self.final(v, pol)))

    def t_trans_pron(self) -> _Tokens:
        v = self.rng.choice(self.lex.pron_obj_verbs)
        s = self.subject(v.subj, p_pron=0.6)
        o = self.pron(s if isinstance(s, _Pron) else None)
        pol = self.polarity()
        return _sentence(s, _Clause("trans", v, obj=o, polarity=pol, final=self.final(v, pol)))

    def t_trans_pp(self) -> _Tokens:
        v = self.rng.choice(self.lex.trans)
        s = self.subject(v.subj)
        pol = "neg" if self.rng.random() < 0.25 else "pos"
        return _sentence(
            s, _Clause("trans", v, obj=self.obj_arg(v, s), polarity=pol, pp=self.loc((PLACE, FURNITURE)))
        )

    def t_ditrans(self) -> _Tokens:
        v = self.rng.choice(self.lex.ditrans)
        s = self.subject(v.subj)
        o = self.np(_ROLE_CORE, v.obj, p_adj=0.35)
        if self.rng.random() < 0.4:
            r: _Arg = self.pron(s if isinstance(s, _Pron) else None)
        else:
            r = self.np(_ROLE_OBL, v.dat, avoid=s.noun if isinstance(s, _NPSpec) else None, p_adj=0.25)
        pol = "neg" if self.rng.random() < 0.25 else "pos"
        return _sentence(s, _Clause("ditrans", v, obj=o, recipient=r, polarity=pol))

    def t_intr_pp(self) -> _Tokens:
        v = self.rng.choice(self.lex.intr)
        s = self.subject(v.subj)
        pol = self.polarity()
        return _sentence(s, _Clause("intr", v, pp=self.loc(v.locs), polarity=pol, final=self.final(v, pol)))

    def t_comit(self) -> _Tokens:
        v = self.rng.choice(self.lex.comit)
        s = self.subject(v.subj)
        if self.rng.random() < 0.4:
            c: _Arg = self.pron(s if isinstance(s, _Pron) else None)
        else:
            c = self.np(_ROLE_OBL, _ANIMATE, avoid=s.noun if isinstance(s, _NPSpec) else None)
        pol = "neg" if self.rng.random() < 0.25 else "pos"
        return _sentence(s, _Clause("intr", v, pp=("with", c), polarity=pol, final=self.final(v, pol)))

    def t_motion(self) -> _Tokens:
        v = self.rng.choice(self.lex.motion)
        s = self.subject(v.subj)
        d = self.rng.choice(v.dirs)
        pol = "neg" if self.rng.random() < 0.25 else "pos"
        return _sentence(
            s,
            _Clause(
                "motion",
                v,
                pp=(d, self.np(_ROLE_LOC, (PLACE,), p_adj=0.3)),
                polarity=pol,
                final=self.final(v, pol),
            ),
        )

    def t_cop_adj(self) -> _Tokens:
        rng = self.rng
        pol = "neg" if rng.random() < 0.3 else "pos"
        if rng.random() < 0.3:
            s: _Arg = self.pron()
            adj = rng.choice(self.lex.adjs_by_cat[PERSON])
        else:
            s = self.np(_ROLE_CORE, _CATEGORIES, p_adj=0.3)
            adjs = [a for a in self.lex.adjs_by_cat[s.noun.cat] if a is not s.adj]
            adj = rng.choice(adjs)
        return _sentence(s, _Clause("cop_adj", adj=adj, polarity=pol))

    def t_cop_pp(self) -> _Tokens:
        s = self.subject(_LOCATED, p_pron=0.3)
        pol = "neg" if self.rng.random() < 0.25 else "pos"
        return _sentence(s, _Clause("cop_pp", pp=self.loc((FURNITURE, PLACE)), polarity=pol))

    def t_modal(self) -> _Tokens:
        rng = self.rng
        modal = rng.choice(_MODALS)
        pol = "neg" if rng.random() < 0.3 else "pos"
        r = rng.random()
        if r < 0.35:
            v = rng.choice(self.lex.trans)
            s = self.subject(v.subj)
            o = self.np(_ROLE_CORE, v.obj, avoid=s.noun if isinstance(s, _NPSpec) else None)
            cl = _Clause("trans", v, obj=o, polarity=pol, modal=modal)
        elif r < 0.65:
            v = rng.choice(self.lex.pron_obj_verbs)
            s = self.subject(v.subj, p_pron=0.6)
            cl = _Clause(
                "trans", v, obj=self.pron(s if isinstance(s, _Pron) else None), polarity=pol, modal=modal
            )
        else:
            v = rng.choice(self.lex.intr)
            s = self.subject(v.subj)
            cl = _Clause("intr", v, pp=self.loc(v.locs), polarity=pol, modal=modal)
        return _sentence(s, cl)

    def t_relative(self) -> _Tokens:
        rng = self.rng
        if rng.random() < 0.5:
            v = rng.choice(self.lex.trans)
            head = self.np(_ROLE_CORE, v.subj, p_adj=0.25)
            inner = _Clause("trans", v, obj=self.np(_ROLE_CORE, v.obj, avoid=head.noun, p_adj=0.25))
        else:
            v = rng.choice(self.lex.intr)
            head = self.np(_ROLE_CORE, v.subj, p_adj=0.25)
            inner = _Clause("intr", v, pp=self.loc(v.locs))
        adjs = [a for a in self.lex.adjs_by_cat[head.noun.cat] if a is not head.adj]
        return _relative(head, inner, rng.choice(adjs))

    def t_coord(self) -> _Tokens:
        rng = self.rng
        a = self.np(_ROLE_CORE, _ANIMATE, p_adj=0.2)
        b = self.np(_ROLE_CORE, _ANIMATE, avoid=a.noun, p_adj=0.2)
        if rng.random() < 0.5:
            cats = tuple(c for c in _ANIMATE if c in (a.noun.cat, b.noun.cat))
            adjs = [x for x in self.lex.adjs if all(c in x.cats for c in cats)]
            return _coordination(a, b, _Clause("cop_adj", adj=rng.choice(adjs)))
        verbs = [v for v in self.lex.intr if a.noun.cat in v.subj and b.noun.cat in v.subj]
        v = rng.choice(verbs)
        return _coordination(a, b, _Clause("intr", v, pp=self.loc(v.locs)))

    def sample(self) -> _Tokens:
        return self.rng.choices(self.funcs, weights=self.weights)[0]()


@lru_cache(maxsize=32)
def _space(fraction: float) -> int:
    lex = _lexicon(fraction)
    n_pron = len(_PRONOUNS)
    pol = 3 + len(lex.freq)  # pos, neg, never, each frequency adverb
    fin = 1 + len(lex.manner) + len(lex.time)
    loc_all = lex.count_loc((FURNITURE, PLACE))

    def core(cats: Sequence[str]) -> int:
        return lex.count_np(_ROLE_CORE, cats)

    total = 0
    for v in lex.trans:
        subj = lex.count_subj(v)
        objs = core(v.obj) + (n_pron if PERSON in v.obj else 0)
        total += subj * pol * objs * fin  # trans_np, trans_pron
        total += subj * 2 * objs * loc_all  # trans_pp
        total += subj * 2 * len(_MODALS) * objs  # modal + transitive
        for c in v.subj:
            adjs = len(lex.adjs_by_cat[c])
            total += core((c,)) * core(v.obj) * adjs  # relative
    for v in lex.ditrans:
        total += lex.count_subj(v) * 2 * core(v.obj) * (lex.count_np(_ROLE_OBL, v.dat) + n_pron)
    for v in lex.intr:
        subj = lex.count_subj(v)
        locs = lex.count_loc(v.locs)
        total += subj * pol * locs * fin  # intr_pp
        total += subj * 2 * len(_MODALS) * locs  # modal + intransitive
        if v.comit:
            total += subj * 2 * (lex.count_np(_ROLE_OBL, _ANIMATE) + n_pron) * fin
        for c in v.subj:
            total += core((c,)) * locs * len(lex.adjs_by_cat[c])  # relative
        total += core(v.subj) ** 2 * locs  # coordination
    for v in lex.motion:
        total += lex.count_subj(v) * 2 * len(v.dirs) * lex.count_np(_ROLE_LOC, (PLACE,)) * (1 + len(lex.time))
    for c in _CATEGORIES:
        subj = core((c,)) + (n_pron if c == PERSON else 0)
        total += subj * 2 * len(lex.adjs_by_cat[c])  # copula + adjective
    total += core(_ANIMATE) ** 2 * len(lex.adjs)  # coordination + adjective
    total += (core(_LOCATED) + n_pron) * 2 * loc_all  # copula + PP
    return total


def sentence_space(fraction: float = 1.0) -> int:
    """Upper bound on the number of distinct sentence pairs at this lexicon fraction.

    It counts template derivations (ignoring the length filter and rare string
    collisions), so the number of obtainable unique pairs is somewhat lower; at every
    fraction it is far above the sizes used in practice.
    """
    return _space(_check_fraction(fraction))


def _np_forms(
    lex: _Lexicon, role: str, cats: Sequence[str], prep: _Prep | None, en: set[str], it: set[str]
) -> None:
    nums_ok = _ROLE_NUMBERS[role]
    for noun in lex.nouns_for(cats):
        adjs = lex.adjs_by_cat[noun.cat]
        # a/an depends on the first word after the determiner: try both onsets
        probes: list[_Adj | None] = [None]
        for want_vowel in (True, False):
            for a in adjs:
                if (a.en[0] in "aeiou") == want_vowel:
                    probes.append(a)
                    break
        for det in _ROLE_DETS[role]:
            for number in det.numbers:
                if number not in nums_ok:
                    continue
                for a in probes:
                    e, i = _np_tokens(_NPSpec(noun, det, number, a), prep)
                    en.update(e)
                    it.update(i)
                for a in adjs:
                    en.add(a.en)
                    it.add(a.it(noun.gender, number))


@lru_cache(maxsize=32)
def _words(fraction: float) -> tuple[frozenset[str], frozenset[str]]:
    lex = _lexicon(fraction)
    en: set[str] = set()
    it: set[str] = set()
    # noun phrases: subjects/objects (all categories occur as copula subjects)
    _np_forms(lex, _ROLE_CORE, _CATEGORIES, None, en, it)
    for cat, preps in _LOC_PREPS.items():
        for p in preps:
            _np_forms(lex, _ROLE_LOC, (cat,), _PREPS[p], en, it)
    for v in lex.motion:
        for d in v.dirs:
            _np_forms(lex, _ROLE_LOC, (PLACE,), _PREPS[d], en, it)
    dat_cats = tuple(c for c in _CATEGORIES if any(c in v.dat for v in lex.ditrans))
    _np_forms(lex, _ROLE_OBL, dat_cats, _PREPS["to"], en, it)
    if lex.comit:
        _np_forms(lex, _ROLE_OBL, _ANIMATE, _PREPS["with"], en, it)
        for p in _PRONOUNS:
            en.update(("with", p.en_obj))
            it.update(("con", p.it_str))
    # pronouns
    for p in _PRONOUNS:
        en.update((p.en_subj, p.en_obj))
        it.update((p.it_subj, p.it_acc, p.it_dat))
    # predicative adjectives (pronoun subjects, coordinated subjects) use the same
    # four forms as attributive ones, which every category already reaches (each class
    # starts with a masculine and a feminine noun), so nothing is added here.
    # finite verbs, negation, adverbs
    for v in lex.trans + lex.ditrans + lex.intr + lex.motion + _MODALS:
        en.update(v.en)
        en.add(v.en_s)
        it.update(v.forms)
    for v in lex.trans + lex.intr:
        it.add(v.inf)
    for v in lex.pron_obj_verbs:
        it.update(_infinitive(v, p.it_acc) for p in _PRONOUNS)
    en.update(("do", "does", "not", "never", "to", "cannot", "who", "that", "and"))
    en.update(_BE_EN)
    it.update(("non", "mai", "che", "e"))
    it.update(_BE_IT)
    for adv in lex.freq + lex.manner + lex.time:
        en.update(adv.en)
        it.update(adv.it)
    return frozenset(en), frozenset(it)


def lexicon_words(fraction: float = 1.0) -> dict[str, frozenset[str]]:
    """All word types ({'en': ..., 'it': ...}) the generator can emit at this fraction."""
    en, it = _words(_check_fraction(fraction))
    return {"en": en, "it": it}


def lexicon_size(fraction: float = 1.0) -> dict[str, int]:
    """Number of word types per language ({'en': n, 'it': m}) the generator can produce at this fraction."""
    words = lexicon_words(fraction)
    return {lang: len(ws) for lang, ws in words.items()}


def generate_pairs(
    n: int, seed: int, lexicon_fraction: float = 1.0, *, max_attempts: int | None = None
) -> list[SentencePair]:
    """n unique pairs (unique by English AND by Italian side), deterministic for (n, seed, lexicon_fraction).

    lexicon_fraction in (0, 1]: use only the first ceil(fraction * len) entries of each word
    class (at least 2 per class), so a config can shrink the vocabulary. Raise GrammarError with
    a clear message if n unique pairs cannot be produced (n above :func:`sentence_space`, or
    still short after ``max_attempts`` samples, default ``50 * n + 1000``).

    The list for a given (seed, lexicon_fraction) is a prefix of the list for any larger n.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise GrammarError(f"n must be a non-negative integer, got {n!r}")
    fraction = _check_fraction(lexicon_fraction)
    space = _space(fraction)
    if n > space:
        raise GrammarError(
            f"cannot produce {n} unique pairs at lexicon_fraction={fraction}: the grammar "
            f"allows at most {space} distinct sentences"
        )
    attempts = 50 * n + 1000 if max_attempts is None else max_attempts
    sampler = _Sampler(_lexicon(fraction), random.Random(seed))
    pairs: list[SentencePair] = []
    seen_en: set[str] = set()
    seen_it: set[str] = set()
    tries = 0
    while len(pairs) < n:
        if tries >= attempts:
            raise GrammarError(
                f"only {len(pairs)} of {n} unique pairs found after {attempts} attempts "
                f"(seed={seed}, lexicon_fraction={fraction}); lower n or raise lexicon_fraction"
            )
        tries += 1
        en_t, it_t = sampler.sample()
        if not (MIN_WORDS <= len(en_t) <= MAX_WORDS and MIN_WORDS <= len(it_t) <= MAX_WORDS):
            continue
        en, it = " ".join(en_t), " ".join(it_t)
        if en in seen_en or it in seen_it:
            continue
        seen_en.add(en)
        seen_it.add(it)
        pairs.append(SentencePair(en, it))
    return pairs


def vocabulary(pairs: Iterable[SentencePair], lang: str) -> set[str]:
    """Set of whitespace-separated word types on one side ('en' or 'it') of the pairs."""
    if lang not in ("en", "it"):
        raise GrammarError(f"lang must be 'en' or 'it', got {lang!r}")
    out: set[str] = set()
    for p in pairs:
        out.update(getattr(p, lang).split())
    return out


def _find(items: Iterable, key, what: str):
    for x in items:
        if key(x):
            return x
    raise GrammarError(f"unknown {what}")


def _noun(en: str) -> _Noun:
    return _find(
        (n for c in _CATEGORIES for n in _NOUNS[c]), lambda n: en in (n.en_sg, n.en_pl), f"noun {en!r}"
    )


def _adjective(en: str) -> _Adj:
    return _find(_ADJECTIVES, lambda a: a.en == en, f"adjective {en!r}")


def _np_spec(np: NP) -> _NPSpec:
    if np.det not in _DET_BY_KEY:
        raise GrammarError(f"unknown determiner {np.det!r}")
    det = _DET_BY_KEY[np.det]
    if np.number not in det.numbers:
        raise GrammarError(f"determiner {np.det!r} cannot be {np.number!r}")
    return _NPSpec(_noun(np.noun), det, np.number, None if np.adjective is None else _adjective(np.adjective))


def _arg(x: str | NP) -> _Arg:
    if isinstance(x, NP):
        return _np_spec(x)
    if x in _PRON_BY_EN:
        return _PRON_BY_EN[x]
    raise GrammarError(f"unknown pronoun {x!r}")


def _pair(tokens: _Tokens) -> SentencePair:
    return SentencePair(" ".join(tokens[0]), " ".join(tokens[1]))


def translate_np(
    noun: str, det: str = "the", number: str = "sg", adjective: str | None = None, prep: str | None = None
) -> SentencePair:
    """Translate one (optionally prepositional) noun phrase, e.g.
    ``translate_np("table", prep="on")`` -> ``on the table`` / ``sul tavolo``."""
    spec = _np_spec(NP(noun, det, number, adjective))
    if prep is None:
        return _pair(_np_tokens(spec))
    if prep not in _PREPS:
        raise GrammarError(f"unknown preposition {prep!r}")
    return _pair(_np_tokens(spec, _PREPS[prep]))


def translate_clause(
    subject: str | NP,
    verb: str,
    obj: str | NP | None = None,
    *,
    recipient: str | NP | None = None,
    pp: tuple[str, str | NP] | None = None,
    adjective: str | None = None,
    polarity: str = "pos",
    modal: str | None = None,
    final: str | None = None,
) -> SentencePair:
    """Translate one clause built from lexicon entries with the generator's own rules.

    ``subject``/``obj``/``recipient`` are English pronouns (``"she"``, ``"him"``) or
    :class:`NP` specs. ``verb`` is an English lemma (``"see"``, ``"give"``, ``"sleep"``,
    ``"go"``) or ``"be"`` (with ``adjective`` or ``pp``). ``polarity`` is ``"pos"``,
    ``"neg"``, ``"never"`` or a frequency adverb (``"often"``); ``modal`` is ``"want"`` or
    ``"can"``; ``final`` a manner/time adverbial (``"slowly"``, ``"every day"``).
    """
    subj = _arg(subject)
    pp_arg = None if pp is None else (pp[0], _arg(pp[1]))
    if pp is not None and pp[0] not in _PREPS:
        raise GrammarError(f"unknown preposition {pp[0]!r}")
    pol: str | _Adv = polarity
    if polarity not in ("pos", "neg", "never"):
        pol = _find(_FREQ, lambda a: a.en == (polarity,), f"polarity {polarity!r}")
    fin = (
        None
        if final is None
        else _find(_MANNER + _TIME, lambda a: a.en == tuple(final.split()), f"adverbial {final!r}")
    )
    mod = None if modal is None else _find(_MODALS, lambda m: m.en == (modal,), f"modal {modal!r}")
    if verb == "be":
        kind = "cop_adj" if adjective is not None else "cop_pp"
        cl = _Clause(kind, adj=None if adjective is None else _adjective(adjective), pp=pp_arg, polarity=pol)
        return _pair(_sentence(subj, cl))
    words = tuple(verb.split())
    if recipient is not None:
        pool, kind = _DITRANSITIVE, "ditrans"
    elif obj is not None:
        pool, kind = _TRANSITIVE, "trans"
    elif pp is not None and pp[0] in ("to", "from"):
        pool, kind = _MOTION + _INTRANSITIVE, "motion"
    else:
        pool, kind = _INTRANSITIVE, "intr"
    v = _find(pool, lambda x: x.en == words, f"verb {verb!r} for this construction")
    cl = _Clause(
        kind,
        v,
        obj=None if obj is None else _arg(obj),
        recipient=None if recipient is None else _arg(recipient),
        pp=pp_arg,
        polarity=pol,
        modal=mod,
        final=fin,
    )
    return _pair(_sentence(subj, cl))
