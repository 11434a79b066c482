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
no verb that can follow an object clitic does, so elision (``l'``, ``un'``, ``dell'``)
never occurs.

This module holds the generation logic: the sentence templates and their sampling
weights, noun-phrase and verb-phrase construction in both languages (agreement,
articles, clitics, fused prepositions), the count of possible sentences
(:func:`sentence_space`) and of word types (:func:`lexicon_words`), and
:func:`translate_np` / :func:`translate_clause` for single phrases.  The words themselves
(nouns, adjectives, verbs, adverbials, pronouns, determiners, prepositions and their
forms) are in :mod:`caspes.data.synthetic.lexicon`.

Generation only iterates over lists and tuples (never sets), and all randomness comes
from a private :class:`random.Random`, so results do not depend on ``PYTHONHASHSEED``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from caspes.data.synthetic.lexicon import (
    ADJECTIVES,
    ANIMAL,
    ANIMATE,
    BE_EN,
    BE_IT,
    CAN,
    CATEGORIES,
    DET_BY_KEY,
    DETS,
    DITRANSITIVE,
    FOOD,
    FREQ,
    FURNITURE,
    FUSE_PREFIX,
    FUSE_SUFFIX,
    INTRANSITIVE,
    LOC_PREPS,
    MANNER,
    MODALS,
    MOTION,
    NOUNS,
    NUMERALS,
    PERSON,
    PLACE,
    POSSESSIVES,
    PREPS,
    PRON_BY_EN,
    PRONOUNS,
    TEXT,
    THING,
    TIME,
    TRANSITIVE,
    VOWELS,
    Adjective,
    Adverb,
    Determiner,
    Noun,
    Preposition,
    Pronoun,
    Verb,
)

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


# pairs (subject person, object person) that would need a reflexive: excluded
_REFLEXIVE = ((0, 0), (1, 1), (3, 3), (0, 3), (3, 0))


# sampling weights of the determiners (default 1)
_DET_WEIGHTS = {"the": 6.0, "a": 3.0}


# noun-phrase roles: which determiners and numbers are allowed
_ROLE_CORE = "core"  # subjects and direct objects
_ROLE_LOC = "loc"  # locative and directional prepositional phrases (singular)
_ROLE_OBL = "obl"  # recipients and companions


# determiners after a preposition: no quantifiers or numerals
_PP_DETS = tuple(DET_BY_KEY[k] for k in ("the", "a", "this", "that", "my", "your", "his", "our", "their"))


_ROLE_DETS: dict[str, tuple[Determiner, ...]] = {_ROLE_CORE: DETS, _ROLE_LOC: _PP_DETS, _ROLE_OBL: _PP_DETS}


_ROLE_NUMBERS = {_ROLE_CORE: ("sg", "pl"), _ROLE_LOC: ("sg",), _ROLE_OBL: ("sg", "pl")}


_LOCATED = (PERSON, ANIMAL, THING, FOOD, TEXT)  # what can be "on the table" / "in the house"


MAX_WORDS = 12
MIN_WORDS = 3


def _lo_onset(word: str) -> bool:
    """True when a masculine word takes lo/gli/uno (s+consonant, z, gn, ps, pn, x, y)."""
    if word[0] in VOWELS:
        raise GrammarError(f"vowel-initial word {word!r} would need elision")
    return (
        word[0] in "zxy"
        or word.startswith(("gn", "ps", "pn"))
        or (word[0] == "s" and len(word) > 1 and word[1] not in VOWELS)
    )


def _article(gender: str, number: str, nxt: str) -> str:
    if gender == "f":
        return "la" if number == "sg" else "le"
    lo = _lo_onset(nxt)
    if number == "sg":
        return "lo" if lo else "il"
    return "gli" if lo else "i"


def _fuse(prep: str, article: str) -> str:
    return FUSE_PREFIX[prep] + FUSE_SUFFIX[article]


def _it_det(det: str, gender: str, number: str, nxt: str) -> tuple[list[str], bool]:
    """Italian determiner tokens before ``nxt``; flag: first token is a definite article."""
    f, sg = gender == "f", number == "sg"
    if det == "the":
        return [_article(gender, number, nxt)], True
    if det in POSSESSIVES:
        poss = POSSESSIVES[det][(1 if f else 0) + (0 if sg else 2)]
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
    if det in NUMERALS:
        return [NUMERALS[det]], False
    raise GrammarError(f"unknown determiner {det!r}")


def _en_det(det: Determiner, number: str, nxt: str) -> list[str]:
    words = det.en_sg if number == "sg" else det.en_pl
    if words is None:
        raise GrammarError(f"determiner {det.key!r} cannot be {number}")
    if words == ("a",) and nxt[0] in "aeiou":
        return ["an"]
    return list(words)


def _apply_prep(prep: Preposition | None, det_tokens: list[str], first_is_article: bool) -> list[str]:
    if prep is None:
        return det_tokens
    if prep.fuse is not None and first_is_article:
        return list(prep.it[:-1]) + [_fuse(prep.fuse, det_tokens[0])] + det_tokens[1:]
    return list(prep.it) + det_tokens


@dataclass(frozen=True)
class _NPSpec:
    noun: Noun
    det: Determiner
    number: str
    adj: Adjective | None

    @property
    def person(self) -> int:
        return 2 if self.number == "sg" else 4


_Arg = _NPSpec | Pronoun


_Tokens = tuple[list[str], list[str]]


def _np_tokens(spec: _NPSpec, prep: Preposition | None = None) -> _Tokens:
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
    prep = PREPS[prep_key]
    if isinstance(arg, Pronoun):
        return list(prep.en) + [arg.en_obj], list(prep.it) + [arg.it_str]
    return _np_tokens(arg, prep)


def _subject_tokens(subj: _Arg) -> tuple[list[str], list[str], int, str]:
    if isinstance(subj, Pronoun):
        return [subj.en_subj], [subj.it_subj], subj.person, subj.gender
    en, it = _np_tokens(subj)
    return en, it, subj.person, subj.noun.gender


def _infinitive(verb: Verb, clitic: str | None) -> str:
    return verb.inf if clitic is None else verb.inf[:-1] + clitic


@dataclass(frozen=True)
class _Clause:
    """Everything after the subject: a verb phrase and its complements."""

    kind: str  # "trans" | "ditrans" | "intr" | "motion" | "cop_adj" | "cop_pp"
    verb: Verb | None = None
    obj: _Arg | None = None
    recipient: _Arg | None = None
    pp: tuple[str, _Arg] | None = None
    adj: Adjective | None = None
    polarity: str | Adverb = "pos"  # "pos" | "neg" | "never" | frequency adverb
    modal: Verb | None = None
    final: Adverb | None = None


def _vp_tokens(cl: _Clause, person: int, gender: str, number: str) -> _Tokens:
    en: list[str] = []
    it: list[str] = []
    pol = cl.polarity
    neg = pol in ("neg", "never")
    # Italian clitic (direct or indirect object pronoun)
    clitic = None
    if isinstance(cl.obj, Pronoun):
        clitic = cl.obj.it_acc
    elif cl.kind == "ditrans" and isinstance(cl.recipient, Pronoun):
        clitic = cl.recipient.it_dat

    if cl.kind in ("cop_adj", "cop_pp"):
        en += [BE_EN[person]] + (["not"] if neg else [])
        it += (["non"] if neg else []) + [BE_IT[person]]
    elif cl.modal is not None:
        verb = cl.verb
        assert verb is not None
        if cl.modal is CAN:
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
        elif isinstance(pol, Adverb):
            it += list(pol.it)

    # complements
    if cl.kind == "trans":
        assert cl.obj is not None
        if isinstance(cl.obj, Pronoun):
            en.append(cl.obj.en_obj)
        else:
            e, i = _np_tokens(cl.obj)
            en += e
            it += i
    elif cl.kind == "ditrans":
        assert isinstance(cl.obj, _NPSpec) and cl.recipient is not None
        e, i = _np_tokens(cl.obj)
        if isinstance(cl.recipient, Pronoun):
            en += [cl.recipient.en_obj] + e
            it += i
        else:
            re_, ri = _np_tokens(cl.recipient, PREPS["to"])
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


def _relative(head: _NPSpec, inner: _Clause, adj: Adjective) -> _Tokens:
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
        self.nouns = {c: _take(NOUNS[c], fraction) for c in CATEGORIES}
        self.adjs = _take(ADJECTIVES, fraction)
        self.trans = _take(TRANSITIVE, fraction)
        self.ditrans = _take(DITRANSITIVE, fraction)
        self.intr = _take(INTRANSITIVE, fraction)
        self.motion = _take(MOTION, fraction)
        self.freq = _take(FREQ, fraction)
        self.manner = _take(MANNER, fraction)
        self.time = _take(TIME, fraction)
        self.adjs_by_cat = {c: tuple(a for a in self.adjs if c in a.cats) for c in CATEGORIES}
        self.comit = tuple(v for v in self.intr if v.comit)
        self.pron_obj_verbs = tuple(v for v in self.trans if PERSON in v.obj)
        self._noun_cache: dict[tuple[str, ...], tuple[Noun, ...]] = {}

    def nouns_for(self, cats: Sequence[str]) -> tuple[Noun, ...]:
        key = tuple(cats)
        if key not in self._noun_cache:
            self._noun_cache[key] = tuple(n for c in key for n in self.nouns[c])
        return self._noun_cache[key]

    # -- counting (upper bound on distinct derivations) ------------------------------
    def count_np(self, role: str, cats: Sequence[str], dets: Sequence[Determiner] | None = None) -> int:
        nums = _ROLE_NUMBERS[role]
        dets = _ROLE_DETS[role] if dets is None else dets
        n_det = sum(sum(1 for n in d.numbers if n in nums) for d in dets)
        return sum(len(self.nouns[c]) * n_det * (1 + len(self.adjs_by_cat[c])) for c in cats)

    def count_loc(self, cats: Sequence[str]) -> int:
        return sum(len(LOC_PREPS[c]) * self.count_np(_ROLE_LOC, (c,)) for c in cats)

    def count_subj(self, verb: Verb) -> int:
        return (len(PRONOUNS) if PERSON in verb.subj else 0) + self.count_np(_ROLE_CORE, verb.subj)


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
    def np(self, role: str, cats: Sequence[str], avoid: _Arg | None = None, p_adj: float = 0.45) -> _NPSpec:
        """A noun phrase; not with the noun of ``avoid`` (another noun phrase of the clause)."""
        rng, lex = self.rng, self.lex
        nouns = lex.nouns_for(cats)
        noun = rng.choice(nouns)
        if isinstance(avoid, _NPSpec) and noun is avoid.noun:
            noun = nouns[(nouns.index(noun) + 1) % len(nouns)]
        dets = _ROLE_DETS[role]
        det = rng.choices(dets, weights=[_DET_WEIGHTS.get(d.key, 1.0) for d in dets])[0]
        nums = [n for n in det.numbers if n in _ROLE_NUMBERS[role]]
        number = nums[0] if len(nums) == 1 else ("sg" if rng.random() < 0.6 else "pl")
        adjs = lex.adjs_by_cat[noun.cat]
        adj = rng.choice(adjs) if adjs and rng.random() < p_adj else None
        return _NPSpec(noun, det, number, adj)

    def pron(self, other: _Arg | None = None) -> Pronoun:
        """A pronoun; none that would need a reflexive with ``other`` if that is a pronoun."""
        choices = (
            tuple(p for p in PRONOUNS if (other.person, p.person) not in _REFLEXIVE)
            if isinstance(other, Pronoun)
            else PRONOUNS
        )
        return self.rng.choice(choices)

    def subject(self, verb_subj: Sequence[str], p_pron: float = 0.35) -> _Arg:
        if PERSON in verb_subj and self.rng.random() < p_pron:
            return self.pron()
        return self.np(_ROLE_CORE, verb_subj)

    def polarity(self, p_pos: float = 0.55) -> str | Adverb:
        r = self.rng.random()
        if r < p_pos:
            return "pos"
        if r < p_pos + 0.2:
            return "neg"
        if r < p_pos + 0.27:
            return "never"
        return self.rng.choice(self.lex.freq)

    def final(self, verb: Verb, pol: str | Adverb = "pos", p: float = 0.25) -> Adverb | None:
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
        prep = self.rng.choice(LOC_PREPS[cat])
        return prep, self.np(_ROLE_LOC, (cat,), p_adj=0.3)

    def obj_arg(self, verb: Verb, subj: _Arg) -> _Arg:
        if PERSON in verb.obj and self.rng.random() < 0.3:
            return self.pron(subj)
        return self.np(_ROLE_CORE, verb.obj, avoid=subj)

    # -- templates --------------------------------------------------------------------
    def t_trans_np(self) -> _Tokens:
        v = self.rng.choice(self.lex.trans)
        s = self.subject(v.subj)
        o = self.np(_ROLE_CORE, v.obj, avoid=s)
        pol = self.polarity()
        return _sentence(s, _Clause("trans", v, obj=o, polarity=pol, final=self.final(v, pol)))

    def t_trans_pron(self) -> _Tokens:
        v = self.rng.choice(self.lex.pron_obj_verbs)
        s = self.subject(v.subj, p_pron=0.6)
        o = self.pron(s)
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
            r: _Arg = self.pron(s)
        else:
            r = self.np(_ROLE_OBL, v.dat, avoid=s, p_adj=0.25)
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
            c: _Arg = self.pron(s)
        else:
            c = self.np(_ROLE_OBL, ANIMATE, avoid=s)
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
            s = self.np(_ROLE_CORE, CATEGORIES, p_adj=0.3)
            adjs = [a for a in self.lex.adjs_by_cat[s.noun.cat] if a is not s.adj]
            adj = rng.choice(adjs)
        return _sentence(s, _Clause("cop_adj", adj=adj, polarity=pol))

    def t_cop_pp(self) -> _Tokens:
        s = self.subject(_LOCATED, p_pron=0.3)
        pol = "neg" if self.rng.random() < 0.25 else "pos"
        return _sentence(s, _Clause("cop_pp", pp=self.loc((FURNITURE, PLACE)), polarity=pol))

    def t_modal(self) -> _Tokens:
        rng = self.rng
        modal = rng.choice(MODALS)
        pol = "neg" if rng.random() < 0.3 else "pos"
        r = rng.random()
        if r < 0.35:
            v = rng.choice(self.lex.trans)
            s = self.subject(v.subj)
            o = self.np(_ROLE_CORE, v.obj, avoid=s)
            cl = _Clause("trans", v, obj=o, polarity=pol, modal=modal)
        elif r < 0.65:
            v = rng.choice(self.lex.pron_obj_verbs)
            s = self.subject(v.subj, p_pron=0.6)
            cl = _Clause("trans", v, obj=self.pron(s), polarity=pol, modal=modal)
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
            inner = _Clause("trans", v, obj=self.np(_ROLE_CORE, v.obj, avoid=head, p_adj=0.25))
        else:
            v = rng.choice(self.lex.intr)
            head = self.np(_ROLE_CORE, v.subj, p_adj=0.25)
            inner = _Clause("intr", v, pp=self.loc(v.locs))
        adjs = [a for a in self.lex.adjs_by_cat[head.noun.cat] if a is not head.adj]
        return _relative(head, inner, rng.choice(adjs))

    def t_coord(self) -> _Tokens:
        rng = self.rng
        a = self.np(_ROLE_CORE, ANIMATE, p_adj=0.2)
        b = self.np(_ROLE_CORE, ANIMATE, avoid=a, p_adj=0.2)
        if rng.random() < 0.5:
            cats = tuple(c for c in ANIMATE if c in (a.noun.cat, b.noun.cat))
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
    n_pron = len(PRONOUNS)
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
        total += subj * 2 * len(MODALS) * objs  # modal + transitive
        for c in v.subj:
            adjs = len(lex.adjs_by_cat[c])
            total += core((c,)) * core(v.obj) * adjs  # relative
    for v in lex.ditrans:
        total += lex.count_subj(v) * 2 * core(v.obj) * (lex.count_np(_ROLE_OBL, v.dat) + n_pron)
    for v in lex.intr:
        subj = lex.count_subj(v)
        locs = lex.count_loc(v.locs)
        total += subj * pol * locs * fin  # intr_pp
        total += subj * 2 * len(MODALS) * locs  # modal + intransitive
        if v.comit:
            total += subj * 2 * (lex.count_np(_ROLE_OBL, ANIMATE) + n_pron) * fin
        for c in v.subj:
            total += core((c,)) * locs * len(lex.adjs_by_cat[c])  # relative
        total += core(v.subj) ** 2 * locs  # coordination
    for v in lex.motion:
        total += lex.count_subj(v) * 2 * len(v.dirs) * lex.count_np(_ROLE_LOC, (PLACE,)) * (1 + len(lex.time))
    for c in CATEGORIES:
        subj = core((c,)) + (n_pron if c == PERSON else 0)
        total += subj * 2 * len(lex.adjs_by_cat[c])  # copula + adjective
    total += core(ANIMATE) ** 2 * len(lex.adjs)  # coordination + adjective
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
    lex: _Lexicon, role: str, cats: Sequence[str], prep: Preposition | None, en: set[str], it: set[str]
) -> None:
    nums_ok = _ROLE_NUMBERS[role]
    for noun in lex.nouns_for(cats):
        adjs = lex.adjs_by_cat[noun.cat]
        # a/an depends on the first word after the determiner: try both onsets
        probes: list[Adjective | None] = [None]
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
    _np_forms(lex, _ROLE_CORE, CATEGORIES, None, en, it)
    for cat, preps in LOC_PREPS.items():
        for p in preps:
            _np_forms(lex, _ROLE_LOC, (cat,), PREPS[p], en, it)
    for v in lex.motion:
        for d in v.dirs:
            _np_forms(lex, _ROLE_LOC, (PLACE,), PREPS[d], en, it)
    dat_cats = tuple(c for c in CATEGORIES if any(c in v.dat for v in lex.ditrans))
    _np_forms(lex, _ROLE_OBL, dat_cats, PREPS["to"], en, it)
    if lex.comit:
        _np_forms(lex, _ROLE_OBL, ANIMATE, PREPS["with"], en, it)
        for p in PRONOUNS:
            en.update(("with", p.en_obj))
            it.update(("con", p.it_str))
    # pronouns
    for p in PRONOUNS:
        en.update((p.en_subj, p.en_obj))
        it.update((p.it_subj, p.it_acc, p.it_dat))
    # predicative adjectives (pronoun subjects, coordinated subjects) use the same
    # four forms as attributive ones, which every category already reaches (each class
    # starts with a masculine and a feminine noun), so nothing is added here.
    # finite verbs, negation, adverbs
    for v in lex.trans + lex.ditrans + lex.intr + lex.motion + MODALS:
        en.update(v.en)
        en.add(v.en_s)
        it.update(v.forms)
    for v in lex.trans + lex.intr:
        it.add(v.inf)
    for v in lex.pron_obj_verbs:
        it.update(_infinitive(v, p.it_acc) for p in PRONOUNS)
    en.update(("do", "does", "not", "never", "to", "cannot", "who", "that", "and"))
    en.update(BE_EN)
    it.update(("non", "mai", "che", "e"))
    it.update(BE_IT)
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


def _noun(en: str) -> Noun:
    return _find(
        (n for c in CATEGORIES for n in NOUNS[c]), lambda n: en in (n.en_sg, n.en_pl), f"noun {en!r}"
    )


def _adjective(en: str) -> Adjective:
    return _find(ADJECTIVES, lambda a: a.en == en, f"adjective {en!r}")


def _np_spec(np: NP) -> _NPSpec:
    if np.det not in DET_BY_KEY:
        raise GrammarError(f"unknown determiner {np.det!r}")
    det = DET_BY_KEY[np.det]
    if np.number not in det.numbers:
        raise GrammarError(f"determiner {np.det!r} cannot be {np.number!r}")
    return _NPSpec(_noun(np.noun), det, np.number, None if np.adjective is None else _adjective(np.adjective))


def _arg(x: str | NP) -> _Arg:
    if isinstance(x, NP):
        return _np_spec(x)
    if x in PRON_BY_EN:
        return PRON_BY_EN[x]
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
    if prep not in PREPS:
        raise GrammarError(f"unknown preposition {prep!r}")
    return _pair(_np_tokens(spec, PREPS[prep]))


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
    if pp is not None and pp[0] not in PREPS:
        raise GrammarError(f"unknown preposition {pp[0]!r}")
    pol: str | Adverb = polarity
    if polarity not in ("pos", "neg", "never"):
        pol = _find(FREQ, lambda a: a.en == (polarity,), f"polarity {polarity!r}")
    fin = (
        None
        if final is None
        else _find(MANNER + TIME, lambda a: a.en == tuple(final.split()), f"adverbial {final!r}")
    )
    mod = None if modal is None else _find(MODALS, lambda m: m.en == (modal,), f"modal {modal!r}")
    if verb == "be":
        kind = "cop_adj" if adjective is not None else "cop_pp"
        cl = _Clause(kind, adj=None if adjective is None else _adjective(adjective), pp=pp_arg, polarity=pol)
        return _pair(_sentence(subj, cl))
    words = tuple(verb.split())
    if recipient is not None:
        pool, kind = DITRANSITIVE, "ditrans"
    elif obj is not None:
        pool, kind = TRANSITIVE, "trans"
    elif pp is not None and pp[0] in ("to", "from"):
        pool, kind = MOTION + INTRANSITIVE, "motion"
    else:
        pool, kind = INTRANSITIVE, "intr"
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
