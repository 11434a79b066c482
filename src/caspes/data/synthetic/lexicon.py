"""The word lists of the synthetic English -> Italian grammar (:mod:`.grammar`).

This module holds data only: every noun, adjective, verb, adverbial, pronoun,
determiner and preposition the generator can use, with its English and Italian forms,
and the small record types and constructors that build those forms (regular Italian
conjugation of -are/-ere/-ire verbs, the four forms of -o/-e adjectives, English
third-person -s).  The rules that combine the words into sentences live in
:mod:`.grammar`.

* Nouns and adjectives carry a semantic *category* (person, animal, thing, food, text,
  place, furniture); verbs list the categories allowed as subject, object, recipient
  and location, adjectives the categories they can describe, so that generated
  sentences stay plausible ("the boy reads the book", never "the book reads the boy").
* Every word class is a tuple (or a dict of tuples) in a fixed order, and the first
  entries matter: :func:`.grammar.generate_pairs` with ``lexicon_fraction < 1`` keeps
  only a prefix of each class, so each class starts with entries that keep every
  construction usable (one masculine and one feminine noun, broadly applicable
  adjectives and verbs).
* No Italian noun starts with a vowel, and neither does any form of a verb that can
  follow an object clitic, so the grammar never needs elision (``l'``, ``un'``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: Vowels of both languages (Italian with accents), for a/an, -ies and lo/gli choices.
VOWELS = "aeiouàèéìòù"

# Semantic categories of nouns: verbs and adjectives list the categories they accept.
PERSON, ANIMAL, THING, FOOD, TEXT, PLACE, FURNITURE = (
    "person",
    "animal",
    "thing",
    "food",
    "text",
    "place",
    "furniture",
)


CATEGORIES: tuple[str, ...] = (PERSON, ANIMAL, THING, FOOD, TEXT, PLACE, FURNITURE)
ANIMATE = (PERSON, ANIMAL)
_ALL = CATEGORIES


@dataclass(frozen=True)
class Noun:
    """A noun in both languages, with its Italian gender and semantic category."""

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
class Adjective:
    """An adjective, its four Italian forms and the noun categories it can describe."""

    en: str
    forms: tuple[str, str, str, str]  # masc sg, fem sg, masc pl, fem pl
    cats: tuple[str, ...]

    def it(self, gender: str, number: str) -> str:
        return self.forms[(0 if gender == "m" else 1) + (0 if number == "sg" else 2)]


@dataclass(frozen=True)
class Verb:
    """A verb: English and Italian present-tense forms and the categories of its
    arguments (subject, object, recipient, location; companions, motion direction)."""

    en: tuple[str, ...]  # base form, possibly with a particle ("look", "for")
    en_s: str  # third person singular of the first word
    inf: str  # Italian infinitive
    forms: tuple[str, str, str, str, str]  # io, tu, lui/lei, noi, loro
    subj: tuple[str, ...] = ANIMATE
    obj: tuple[str, ...] = ()
    dat: tuple[str, ...] = ()
    locs: tuple[str, ...] = ()
    comit: bool = False
    dirs: tuple[str, ...] = ()  # motion prepositions ("to", "from")
    stative: bool = False  # no manner adverbs ("knows him quickly")

    def en_finite(self, person: int) -> tuple[str, ...]:
        return ((self.en_s,) if person == 2 else (self.en[0],)) + self.en[1:]


@dataclass(frozen=True)
class Adverb:
    """An adverb or adverbial phrase, word by word in each language."""

    en: tuple[str, ...]
    it: tuple[str, ...]


@dataclass(frozen=True)
class Pronoun:
    """A personal pronoun: English subject/object forms, Italian subject, clitic and
    stressed forms."""

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
class Determiner:
    """An English determiner by key; ``None`` for a number it cannot combine with.
    (The Italian forms depend on the noun and are chosen by :mod:`.grammar`.)"""

    key: str
    en_sg: tuple[str, ...] | None
    en_pl: tuple[str, ...] | None

    @property
    def numbers(self) -> tuple[str, ...]:
        return tuple(n for n, w in (("sg", self.en_sg), ("pl", self.en_pl)) if w is not None)


@dataclass(frozen=True)
class Preposition:
    """A preposition, word by word in each language."""

    en: tuple[str, ...]
    it: tuple[str, ...]
    fuse: str | None  # Italian preposition that fuses with a following definite article


def _en_s(word: str) -> str:
    if word.endswith(("s", "sh", "ch", "x", "z", "o")):
        return word + "es"
    if word.endswith("y") and word[-2] not in VOWELS:
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
    return _ere(inf)  # -ire verbs without -isc- conjugate like -ere in the present


def _regular(inf: str) -> tuple[str, str, str, str, str]:
    return {"are": _are, "ere": _ere, "ire": _ire}[inf[-3:]](inf)


def _v(en: str, inf: str, forms: tuple[str, str, str, str, str] | None = None, **kw) -> Verb:
    words = tuple(en.split())
    return Verb(words, _en_s(words[0]), inf, forms or _regular(inf), **kw)


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


def _n(cat: str, entries: Sequence[tuple[str, str, str, str, str]]) -> tuple[Noun, ...]:
    return tuple(Noun(a, b, c, d, g, cat) for a, b, c, d, g in entries)


# Each class is ordered so that its first two entries keep every construction usable
# (one masculine and one feminine noun, broadly applicable adjectives and verbs).
NOUNS: dict[str, tuple[Noun, ...]] = {
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


ADJECTIVES: tuple[Adjective, ...] = (
    Adjective("big", _e("grande"), _ALL),
    Adjective("small", _o("piccolo"), _ALL),
    Adjective("old", _o("vecchio"), (PERSON, ANIMAL, THING, TEXT, PLACE, FURNITURE)),
    Adjective("new", _o("nuovo"), (THING, TEXT, PLACE, FURNITURE)),
    Adjective("black", _o("nero"), (ANIMAL, THING, TEXT, FURNITURE)),
    Adjective("white", _o("bianco"), (ANIMAL, THING, TEXT, PLACE, FURNITURE)),
    Adjective("red", _o("rosso"), (THING, FOOD, TEXT, PLACE, FURNITURE)),
    Adjective("green", _e("verde"), (THING, FOOD, TEXT, FURNITURE)),
    Adjective("yellow", _o("giallo"), (THING, FOOD, TEXT, FURNITURE)),
    Adjective("blue", _inv("blu"), (THING, TEXT, FURNITURE)),
    Adjective("brown", _e("marrone"), (ANIMAL, THING, FURNITURE)),
    Adjective("beautiful", _o("bello"), _ALL),
    Adjective("ugly", _o("brutto"), _ALL),
    Adjective("young", _e("giovane"), ANIMATE),
    Adjective("happy", _e("felice"), ANIMATE),
    Adjective("sad", _e("triste"), ANIMATE),
    Adjective("tired", _o("stanco"), ANIMATE),
    Adjective("hungry", _o("affamato"), ANIMATE),
    Adjective("angry", _o("arrabbiato"), ANIMATE),
    Adjective("clever", _e("intelligente"), ANIMATE),
    Adjective("brave", _o("coraggioso"), ANIMATE),
    Adjective("fast", _e("veloce"), ANIMATE),
    Adjective("kind", _e("gentile"), (PERSON,)),
    Adjective("rich", _o("ricco"), (PERSON,)),
    Adjective("famous", _o("famoso"), (PERSON, TEXT, PLACE)),
    Adjective("interesting", _e("interessante"), (PERSON, TEXT, PLACE)),
    Adjective("heavy", _e("pesante"), _OBJECTS),
    Adjective("empty", _o("vuoto"), (THING, PLACE)),
    Adjective("broken", _o("rotto"), (THING, FURNITURE)),
    Adjective("clean", _o("pulito"), (THING, FURNITURE, PLACE)),
    Adjective("dirty", _o("sporco"), (ANIMAL, THING, FURNITURE, PLACE)),
    Adjective("expensive", _o("costoso"), (THING, FOOD, FURNITURE)),
    Adjective("long", _o("lungo"), (TEXT, FURNITURE)),
    Adjective("sweet", _e("dolce"), (FOOD,)),
    Adjective("fresh", _o("fresco"), (FOOD,)),
    Adjective("delicious", _o("delizioso"), (FOOD,)),
)


_CONCRETE = (PERSON, ANIMAL, THING, FOOD, TEXT)


TRANSITIVE: tuple[Verb, ...] = (
    _v("see", "vedere", obj=_ALL, stative=True),
    _v("find", "trovare", obj=_CONCRETE),
    _v("look for", "cercare", obj=_CONCRETE),
    _v("call", "chiamare", subj=(PERSON,), obj=ANIMATE),
    _v("follow", "seguire", obj=ANIMATE),
    _v("know", "conoscere", subj=(PERSON,), obj=(PERSON, ANIMAL, PLACE), stative=True),
    _v("hear", "sentire", obj=ANIMATE, stative=True),
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


DITRANSITIVE: tuple[Verb, ...] = (
    _v(
        "give",
        "dare",
        ("do", "dai", "dà", "diamo", "danno"),
        subj=(PERSON,),
        obj=(THING, FOOD, TEXT),
        dat=ANIMATE,
    ),
    _v("show", "mostrare", subj=(PERSON,), obj=(ANIMAL, THING, TEXT), dat=(PERSON,)),
    _v("send", "mandare", subj=(PERSON,), obj=(THING, TEXT), dat=(PERSON,)),
    _v("bring", "portare", subj=(PERSON,), obj=(THING, FOOD, TEXT), dat=ANIMATE),
    _v("sell", "vendere", subj=(PERSON,), obj=(ANIMAL, THING, FOOD, TEXT, FURNITURE), dat=(PERSON,)),
    _v("throw", "lanciare", subj=(PERSON,), obj=(THING, FOOD), dat=ANIMATE),
)


INTRANSITIVE: tuple[Verb, ...] = (
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


MOTION: tuple[Verb, ...] = (
    _v("go", "andare", ("vado", "vai", "va", "andiamo", "vanno"), dirs=("to",)),
    _v("come", "venire", ("vengo", "vieni", "viene", "veniamo", "vengono"), dirs=("to", "from")),
    _v("return", "tornare", dirs=("to", "from")),
)


# modals take a bare infinitive (Italian) / "to" + infinitive or bare (English)
WANT = _v("want", "volere", ("voglio", "vuoi", "vuole", "vogliamo", "vogliono"))
CAN = Verb(("can",), "can", "potere", ("posso", "puoi", "può", "possiamo", "possono"))


MODALS = (WANT, CAN)

# the copula, by person (1sg 2sg 3sg 1pl 3pl)
BE_EN = ("am", "are", "is", "are", "are")
BE_IT = ("sono", "sei", "è", "siamo", "sono")


def _adv(en: str, it: str) -> Adverb:
    return Adverb(tuple(en.split()), tuple(it.split()))


# frequency adverbs: before the verb in English, after the finite verb in Italian
FREQ = (
    _adv("often", "spesso"),
    _adv("always", "sempre"),
    _adv("rarely", "raramente"),
    _adv("still", "ancora"),
)


# manner and time adverbials: sentence final in both languages
MANNER = (
    _adv("slowly", "lentamente"),
    _adv("quickly", "velocemente"),
    _adv("well", "bene"),
    _adv("quietly", "silenziosamente"),
)


TIME = (
    _adv("today", "oggi"),
    _adv("now", "adesso"),
    _adv("every day", "ogni giorno"),
    _adv("at night", "di notte"),
)


PRONOUNS: tuple[Pronoun, ...] = (
    Pronoun(0, "m", "i", "me", "io", "mi", "mi", "me"),
    Pronoun(1, "m", "you", "you", "tu", "ti", "ti", "te"),
    Pronoun(2, "m", "he", "him", "lui", "lo", "gli", "lui"),
    Pronoun(2, "f", "she", "her", "lei", "la", "le", "lei"),
    Pronoun(3, "m", "we", "us", "noi", "ci", "ci", "noi"),
    Pronoun(4, "m", "they", "them", "loro", "li", "gli", "loro"),
)


#: Pronoun by its English subject or object form ("she", "her").
PRON_BY_EN = {p.en_subj: p for p in PRONOUNS} | {p.en_obj: p for p in PRONOUNS}


DETS: tuple[Determiner, ...] = (
    Determiner("the", ("the",), ("the",)),
    Determiner("a", ("a",), None),
    Determiner("this", ("this",), ("these",)),
    Determiner("that", ("that",), ("those",)),
    Determiner("my", ("my",), ("my",)),
    Determiner("your", ("your",), ("your",)),
    Determiner("his", ("his",), ("his",)),
    Determiner("our", ("our",), ("our",)),
    Determiner("their", ("their",), ("their",)),
    Determiner("some", None, ("some",)),
    Determiner("many", None, ("many",)),
    Determiner("all the", None, ("all", "the")),
    Determiner("every", ("every",), None),
    Determiner("two", None, ("two",)),
    Determiner("three", None, ("three",)),
    Determiner("four", None, ("four",)),
)


DET_BY_KEY = {d.key: d for d in DETS}

# Italian forms of the possessives (masc sg, fem sg, masc pl, fem pl) and numerals
POSSESSIVES = {
    "my": ("mio", "mia", "miei", "mie"),
    "your": ("tuo", "tua", "tuoi", "tue"),
    "his": ("suo", "sua", "suoi", "sue"),
    "our": _o("nostro"),
    "their": _inv("loro"),
}


NUMERALS = {"two": "due", "three": "tre", "four": "quattro"}


PREPS: dict[str, Preposition] = {
    "on": Preposition(("on",), ("su",), "su"),
    "under": Preposition(("under",), ("sotto",), None),
    "near": Preposition(("near",), ("vicino", "a"), "a"),
    "behind": Preposition(("behind",), ("dietro",), None),
    "in": Preposition(("in",), ("in",), "in"),
    "in front of": Preposition(("in", "front", "of"), ("davanti", "a"), "a"),
    "to": Preposition(("to",), ("a",), "a"),
    "from": Preposition(("from",), ("da",), "da"),
    "with": Preposition(("with",), ("con",), None),
}


#: Locative prepositions usable with a noun of each category ("on the table", "in the house").
LOC_PREPS: dict[str, tuple[str, ...]] = {
    FURNITURE: ("on", "under", "near", "behind"),
    PLACE: ("in", "near", "behind", "in front of"),
}

# articulated prepositions: prefix of the preposition + suffix of the article (su + il = sul)
FUSE_PREFIX = {"di": "de", "a": "a", "da": "da", "in": "ne", "su": "su"}
FUSE_SUFFIX = {"il": "l", "lo": "llo", "la": "lla", "i": "i", "gli": "gli", "le": "lle"}
