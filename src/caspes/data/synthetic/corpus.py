"""The embedded bilingual corpus: grammar sentences spoken by espeak-ng, with word times.

Every source language gets the same sentence pairs per split (English audio → English
transcript + Italian translation; Italian audio → Italian transcript + English translation), each
utterance spoken by a voice drawn from the configured voices, speaking rates and pitches. Splits
are disjoint by construction: the pool of unique pairs is cut into test, dev and train in that
order, so no sentence (on either side) is shared between splits.

Everything random comes from ``seed``: the same configuration gives byte-identical manifests and
audio.
"""

from __future__ import annotations

import multiprocessing as mp
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from caspes.core.audio import n_frames_for_duration, write_audio
from caspes.core.manifest import DataError, Skip, format_word_times, write_manifest, write_skipped
from caspes.data.policy import SkipLog, UtterancePolicy, check_duration
from caspes.data.synthetic.espeak import EspeakSynthesizer, SynthesisError, Voice
from caspes.data.synthetic.grammar import generate_pairs

__all__ = ["SyntheticCorpusConfig", "Utterance", "plan_utterances", "check_voices", "synthesize_corpus"]

SPLIT_ORDER = ("test", "dev", "train")  # the pool is cut in this order (see module docstring)


@dataclass(frozen=True)
class SyntheticCorpusConfig:
    """Sizes are utterances per language and split; voices are espeak-ng voice names per language."""

    sizes: Mapping[str, int]
    voices: Mapping[str, Sequence[str]]
    rates: Sequence[int] = (150, 175, 200)
    pitches: Sequence[int] = (35, 50, 65)
    lexicon_fraction: float = 1.0
    translation: Mapping[str, str] = field(default_factory=lambda: {"en": "it", "it": "en"})
    sample_rate: int = 16000
    seed: int = 1

    def __post_init__(self) -> None:
        for split, n in self.sizes.items():
            if n < 0:
                raise ValueError(f"synthetic.sizes.{split} must be >= 0, got {n}")
        for lang in self.translation:
            if not self.voices.get(lang):
                raise ValueError(f"synthetic.voices.{lang}: at least one espeak-ng voice is needed")


@dataclass(frozen=True)
class Utterance:
    """One planned utterance: what is said, by which voice, and where it goes."""

    id: str
    lang: str
    split: str
    src_text: str
    tgt_text: str
    tgt_lang: str
    voice: str
    rate: int
    pitch: int


def plan_utterances(config: SyntheticCorpusConfig) -> list[Utterance]:
    """The whole corpus as a list of :class:`Utterance`, deterministic for the config."""

    splits = [s for s in SPLIT_ORDER if s in config.sizes] + [s for s in config.sizes if s not in SPLIT_ORDER]
    total = sum(config.sizes[s] for s in splits)
    pairs = generate_pairs(total, seed=config.seed, lexicon_fraction=config.lexicon_fraction)
    out: list[Utterance] = []
    start = 0
    for split in splits:
        chunk = pairs[start : start + config.sizes[split]]
        start += config.sizes[split]
        for lang, tgt_lang in config.translation.items():
            # One RNG per (language, split) so adding a split or language leaves the others unchanged.
            rng = random.Random(f"{config.seed}/{lang}/{split}")
            for k, pair in enumerate(chunk):
                text = {"en": pair.en, "it": pair.it}
                out.append(
                    Utterance(
                        id=f"{lang}_{split}_{k:05d}",
                        lang=lang,
                        split=split,
                        src_text=text[lang],
                        tgt_text=text[tgt_lang],
                        tgt_lang=tgt_lang,
                        voice=rng.choice(list(config.voices[lang])),
                        rate=rng.choice(list(config.rates)),
                        pitch=rng.choice(list(config.pitches)),
                    )
                )
    return out


_SYNTH = None


def _synthesize_one(args: tuple[Utterance, int]):
    """Worker: returns (utterance, samples, word times) or (utterance, None, error message)."""
    global _SYNTH

    utt, sample_rate = args
    if _SYNTH is None:
        _SYNTH = EspeakSynthesizer()
    try:
        result = _SYNTH.synthesize(
            utt.src_text, Voice(utt.voice, rate=utt.rate, pitch=utt.pitch), sample_rate
        )
    except SynthesisError as exc:
        return utt, None, str(exc)
    return utt, result.audio, [(w.start, w.end) for w in result.words]


def check_voices(config: SyntheticCorpusConfig) -> None:
    """Speak one short sentence with every configured voice, rate and pitch before the real work.

    A voice espeak-ng does not know would otherwise turn a whole share of the corpus into
    skipped utterances; here it is a DataError naming the config key.
    """

    probe = {"en": "the cat sleeps", "it": "il gatto dorme"}
    synth = EspeakSynthesizer()
    for lang in config.translation:
        for name in config.voices[lang]:
            for rate in config.rates:
                for pitch in config.pitches:
                    try:
                        synth.synthesize(probe[lang], Voice(name, rate=rate, pitch=pitch), config.sample_rate)
                    except SynthesisError as exc:
                        raise DataError(
                            f"data.synthetic.voices.{lang}: voice '{name}' (rate {rate}, pitch {pitch}) "
                            f"does not work with this espeak-ng: {exc}"
                        ) from exc


def synthesize_corpus(
    config: SyntheticCorpusConfig,
    out_dir: str | Path,
    policy: UtterancePolicy,
    workers: int = 1,
    progress: bool = True,
) -> dict[tuple[str, str], SkipLog]:
    """Synthesize the corpus into ``out_dir/<lang>/{<split>.tsv, <split>.skipped.tsv, audio/<split>/}``.

    Returns the skip log per (language, split). Utterances espeak-ng cannot align word by word,
    or longer than ``policy.max_duration_s``, are counted skips (or errors, per the policy).
    """

    out_dir = Path(out_dir)
    check_voices(config)
    plan = plan_utterances(config)
    rows: dict[tuple[str, str], list[dict[str, object]]] = {}
    skips: dict[tuple[str, str], SkipLog] = {}
    for lang in config.translation:
        for split in config.sizes:
            rows[(lang, split)] = []
            skips[(lang, split)] = SkipLog(policy)
    jobs = [(u, config.sample_rate) for u in plan]
    # fork: workers start from this state without re-running the calling script (a Snakemake
    # script has no __main__ guard); each worker loads libespeak-ng itself, on first use.
    ctx = mp.get_context("fork")
    pool = ctx.Pool(workers) if workers > 1 else None
    try:
        results = pool.imap(_synthesize_one, jobs, chunksize=16) if pool else map(_synthesize_one, jobs)
        for utt, audio, times in tqdm(
            results, total=len(jobs), desc="synthesize", disable=not progress, mininterval=5
        ):
            key = (utt.lang, utt.split)
            source = f"synthetic:{utt.lang}/{utt.split}/{utt.id}"
            if audio is None:
                skips[key].add(Skip(utt.id, source, "synthesis_failed", str(times)))
                continue
            duration = len(audio) / config.sample_rate
            skip = check_duration(utt.id, duration, policy, source)
            if skip is not None:
                skips[key].add(skip)
                continue
            rel = Path("audio") / utt.split / f"{utt.id}.wav"
            write_audio(out_dir / utt.lang / rel, audio, config.sample_rate)
            rows[key].append(
                {
                    "id": utt.id,
                    "audio": rel.as_posix(),
                    "n_frames": n_frames_for_duration(duration),
                    "src_text": utt.src_text,
                    "tgt_text": utt.tgt_text,
                    "speaker": f"{utt.voice}_r{utt.rate}_p{utt.pitch}",
                    "src_lang": utt.lang,
                    "tgt_lang": utt.tgt_lang,
                    "word_times": format_word_times(times),
                }
            )
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    for (lang, split), split_rows in rows.items():
        write_manifest(out_dir / lang / f"{split}.tsv", split_rows)
        write_skipped(out_dir / lang / f"{split}.skipped.tsv", skips[(lang, split)].skips)
        skips[(lang, split)].report(f"synthetic {lang}/{split}", len(split_rows))
    return skips
