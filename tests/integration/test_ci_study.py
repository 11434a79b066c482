"""Runs the configs/ci.yaml study (every stage, up to the paper's tables) through Snakemake in a temporary folder."""

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from caspes.core.manifest import read_manifest, read_skipped
from caspes.features import FeatureReader
from caspes.tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def _snakemake(
    workdir: Path, *args: str, overlays: tuple[Path, ...] = (), env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    # Targets and flags go before --configfile, which takes every following word as a file.
    cmd = [
        "snakemake",
        "-s",
        str(ROOT / "Snakefile"),
        "-d",
        str(workdir),
        "--cores",
        "2",
        *args,
        "--configfile",
        str(ROOT / "configs" / "ci.yaml"),
        *map(str, overlays),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)


def test_data_stage_outputs(data_run):
    data = data_run / "results" / "data" / "synthetic"
    for lang, tgt in (("en", "it"), ("it", "en")):
        for split, size in (("train", 40), ("dev", 8), ("test", 8)):
            rows = read_manifest(data / lang / f"{split}.tsv")
            skipped = read_skipped(data / lang / f"{split}.skipped.tsv")
            assert len(rows) + len(skipped) == size
            assert {r["src_lang"] for r in rows} == {lang} and {r["tgt_lang"] for r in rows} == {tgt}
            for r in rows:
                assert len(r["word_times"].split()) == len(r["src_text"].split())
                assert (data / lang / r["audio"]).is_file()
            feats = FeatureReader(data / lang / f"{split}.fbank.tsv")
            first = feats.rows[0]
            assert feats[first["id"]].shape == (int(first["n_frames"]), 80)
    for name, langs in (("en", ["en"]), ("en_it", ["en", "it"])):
        assert Tokenizer(data / "tokenizer" / f"{name}.model").langs == langs
    stats = pd.read_csv(data / "stats.tsv", sep="\t")
    assert len(stats) == 6 and set(stats["lang"]) == {"en", "it"}
    assert (stats["hours"] > 0).all()
    for rule in ("synthesize_corpus", "extract_fbank", "train_tokenizer", "corpus_stats"):
        assert any((data_run / "logs" / rule).rglob("*.log")), rule
        assert any((data_run / "benchmarks" / rule).rglob("*.tsv")), rule


def test_no_sentence_shared_between_splits(data_run):
    data = data_run / "results" / "data" / "synthetic"
    for lang in ("en", "it"):
        texts = {
            s: {r["src_text"] for r in read_manifest(data / lang / f"{s}.tsv")}
            for s in ("train", "dev", "test")
        }
        assert not texts["train"] & texts["dev"]
        assert not texts["train"] & texts["test"]
        assert not texts["dev"] & texts["test"]


def test_second_run_is_identical(data_run, tmp_path):
    """Same seed → byte-identical manifests, audio and feature archives in a fresh folder."""
    proc = _snakemake(tmp_path, "results/data/synthetic/en/test.fbank.tsv")
    assert proc.returncode == 0, proc.stderr[-4000:]

    def digest(root: Path, rel: str) -> str:
        h = hashlib.sha256()
        for p in sorted((root / rel).rglob("*")):
            if p.is_file():
                h.update(p.relative_to(root).as_posix().encode())
                h.update(p.read_bytes())
        return h.hexdigest()

    for rel in ("results/data/synthetic/en/audio", "results/data/synthetic/it/audio"):
        assert digest(tmp_path, rel) == digest(data_run, rel)
    for rel in ("en/train.tsv", "it/dev.tsv", "en/test.fbank.zip", "en/test.fbank.tsv"):
        a = (tmp_path / "results/data/synthetic" / rel).read_bytes()
        assert a == (data_run / "results/data/synthetic" / rel).read_bytes(), rel


def test_nothing_to_do_after_a_run(data_run):
    proc = _snakemake(data_run, "data", "-n")
    assert proc.returncode == 0
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_misspelt_config_key_stops_before_any_job(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  synthetic:\n    sizess: {train: 1}\n")
    cmd = ["snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path), "-n", "--configfile", str(bad)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "sizess" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("path: nowhere", r"models.mine.path: \S*nowhere is not a folder"),
        ("path: .", r"models.mine.path: \S* has no config.json"),
        (
            "path: hf\n    attn_implementation: sdpa",
            "models.mine.attn_implementation: 'sdpa' does not return",
        ),
    ],
)
def test_bad_own_model_stops_before_any_job(tmp_path, entry, message):
    import re

    from caspes.hf.tiny import build_tiny_speech2text

    if "hf" in entry:
        build_tiny_speech2text(tmp_path / "hf")
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        f"models:\n  mine:\n    source: huggingface\n    languages: [en]\n    tasks: [asr]\n    {entry}\n"
    )
    cmd = ["snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path), "-n",
           "--configfile", str(ROOT / "configs" / "ci.yaml"), str(bad)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert re.search(message, proc.stdout + proc.stderr), (proc.stdout + proc.stderr)[-2000:]
    assert not (tmp_path / "results").exists()


def test_word_spans_hold_the_speech_energy(data_run):
    """Ground-truth word times: frames inside word spans carry far more energy than pauses."""
    data = data_run / "results" / "data" / "synthetic"
    inside, outside = [], []
    for lang in ("en", "it"):
        feats = FeatureReader(data / lang / "test.fbank.tsv", cmvn=False)
        for row in feats.rows:
            energy = np.exp(feats[row["id"]]).sum(axis=1)
            mask = np.zeros(len(energy), bool)
            for pair in row["word_times"].split():
                start, end = (float(x) for x in pair.split(":"))
                mask[int(start * 100) : int(np.ceil(end * 100)) + 1] = True
            inside.append(energy[mask].mean())
            if (~mask).sum() > 3:
                outside.append(energy[~mask].mean())
    assert np.median(inside) > 20 * np.median(outside)


def test_training_outputs(data_run):
    import torch

    from caspes.model.checkpoint import load_model

    for model, stages in (
        ("base", {"asr": 10}),
        ("small", {"asr": 5, "asr_st": 10}),
        ("large", {"asr": 5, "asr_st": 10}),
    ):
        for stage, steps in stages.items():
            history = pd.read_csv(data_run / "results" / model / "train" / stage / "history.tsv", sep="\t")
            assert list(history["step"]) == list(range(1, steps + 1))
            assert history["loss"].notna().all()
            assert (data_run / "logs" / "train_model" / model / f"{stage}.log").is_file()
        net, ckpt = load_model(data_run / "results" / model / "train" / "checkpoint.pt")
        assert ckpt["averaged_steps"] == [steps - 5, steps]  # ci.yaml: checkpoint_every 5, average_last 2
        assert not net.training and net.num_parameters() > 0
        assert isinstance(ckpt["tokenizer"]["model"], bytes)
        torch.testing.assert_close(
            net.state_dict()["decoder.embed_tokens.weight"],
            0.5
            * sum(
                torch.load(
                    data_run / "results" / model / "train" / list(stages)[-1] / f"checkpoint_{s}.pt",
                    weights_only=True,
                )["model"]["decoder.embed_tokens.weight"]
                for s in (steps - 5, steps)
            ),
        )


def test_decoding_outputs(data_run):
    from caspes.decode.xattn import CrossAttentionStore

    quality = pd.read_csv(data_run / "results" / "quality.tsv", sep="\t")
    # base: en ASR; small, large: en and it, ASR and ST; dev and test each.
    assert len(quality) == (1 + 4 + 4) * 2
    assert set(quality["lang_pair"]) == {"en-en", "en-it", "it-it", "it-en"}
    assert quality.loc[quality.task == "asr", "wer"].notna().all()
    assert quality.loc[quality.task == "st", "bleu"].notna().all()
    run = data_run / "results" / "small" / "it-en" / "test"
    hyps = pd.read_csv(run / "hyps.tsv", sep="\t", keep_default_na=False)
    assert len(hyps) == 8 and (hyps["task"] == "st").all()
    assert all(p.split()[0] == "<lang:en>" for p in hyps["pieces"])
    store = CrossAttentionStore(run / "xattn.zip")
    assert list(store.ids) == list(hyps["id"])
    for uid, pieces in zip(hyps["id"], hyps["pieces"], strict=True):
        record = store[uid]
        n_rows = len(pieces.split()) + 1  # one row per target token: the tag, the pieces, EOS
        assert record.attention.shape[:3] == (1, 2, n_rows)  # large/small ci: 1 decoder layer, 2 heads
        np.testing.assert_allclose(record.attention.sum(-1), 1.0, atol=2e-3)
        assert record.roles[0] == "lang" and record.roles[-1] == "eos"


def test_saliency_outputs(data_run):
    from caspes.decode.metrics import bleu, wer_max
    from caspes.decode.xattn import CrossAttentionStore
    from caspes.explain.options import OcclusionOptions
    from caspes.explain.segment import SegmentationStore
    from caspes.explain.spes import explain_encoder, explain_input
    from caspes.explain.stores import SaliencyStore
    from caspes.model.checkpoint import load_model

    table = pd.read_csv(data_run / "results" / "explanations.tsv", sep="\t")
    # test: base en-en + small/large x 4 directions; dev: base en-en; two maps each
    assert len(table) == (1 + 4 + 4 + 1) * 2
    assert set(table["map"]) == {"smx", "smh-p0.7"} and (table["utterances"] == 3).all()
    assert set(table.loc[table["map"] == "smx", "unit"]) == {"cell"}
    assert set(table.loc[table["map"] != "smx", "unit"]) == {"encoder"}
    for row in table.itertuples():  # the AUCs by hand from the curves; every score from its hypotheses
        run = data_run / "results" / row.model / row.direction / row.split
        curve = pd.read_csv(run / "deletion" / f"{row.map}.tsv", sep="\t")
        s, x = curve["score"].to_numpy(float), curve["percent"].to_numpy(float) / 100
        assert row.deletion_auc == pytest.approx(np.sum((s[1:] + s[:-1]) * np.diff(x)) / 2, abs=1e-4)
        size = pd.read_csv(run / "size" / f"{row.map}.tsv", sep="\t")
        a, tau = size["percent_above"].to_numpy(float), size["threshold"].to_numpy(float)
        assert row.size_auc == pytest.approx(np.sum((a[1:] + a[:-1]) * np.diff(tau)) / 2, abs=1e-4)
        refs = pd.read_csv(run / "hyps.tsv", sep="\t", dtype=str, keep_default_na=False).set_index("id")
        deleted = pd.read_csv(
            run / "deletion" / f"{row.map}.hyps.tsv", sep="\t", dtype=str, keep_default_na=False
        )
        metric = wer_max if row.metric == "wer_max" else bleu
        for percent, score in zip(curve["percent"], curve["score"]):
            at = deleted[deleted["percent"].astype(float) == percent]
            assert list(at["id"]) == list(refs.index[:3]), (row.map, percent)  # the explained utterances
            assert score == pytest.approx(
                metric(list(at["hypothesis"]), list(refs.loc[at["id"], "reference"]))
            )
    run = data_run / "results" / "small" / "en-it" / "test"
    xattn = CrossAttentionStore(run / "xattn.zip")
    feats = FeatureReader(data_run / "results" / "data" / "synthetic" / "en" / "test.fbank.tsv")
    model, _ = load_model(data_run / "results" / "small" / "train" / "checkpoint.pt")
    for name, kind in (("smx", "input"), ("smh-p0.7", "encoder")):
        store = SaliencyStore(run / "saliency" / f"{name}.zip")
        assert store.ids == xattn.ids[:3]  # explain.max_utterances: 3, in manifest order
        for uid in store.ids:
            rec, ca = store[uid], xattn[uid]
            assert rec.kind == kind and rec.target_ids == ca.target_ids
            t = feats[uid].shape[0]
            expected = (
                (len(ca.target_ids), t, 80) if kind == "input" else (len(ca.target_ids), ca.encoder_length)
            )
            assert rec.saliency.shape == expected
        # the stored map is the one SPES computes from the checkpoint with the record's settings
        uid = store.ids[0]
        rec = store[uid]
        opts = OcclusionOptions(n_masks=rec.n_masks, p=rec.p, seed=rec.seed)
        if kind == "input":
            with SegmentationStore(data_run / "results/data/synthetic/en/test.segments.zip") as seg:
                direct = explain_input(model, feats[uid], rec.decoder_input, seg.levels(uid), opts, uid)
        else:
            direct = explain_encoder(model, feats[uid], rec.decoder_input, opts, uid)
        row_max = direct.saliency.reshape(len(rec.target_ids), -1).max(axis=1)
        err = np.abs(rec.saliency - direct.saliency).reshape(len(rec.target_ids), -1).max(axis=1)
        assert rec.n_masks == 30 and row_max.max() > 0 and (err <= 1e-3 * row_max).all(), (name, err, row_max)
        curve = pd.read_csv(run / "deletion" / f"{name}.tsv", sep="\t")
        assert list(curve["percent"]) == [0, 25, 50, 75, 100] and curve["metric"][0] == "bleu"
    for rule in ("segment_spectrograms", "explain_input", "explain_encoder", "deletion"):
        assert any((data_run / "logs" / rule).rglob("*.log")), rule


def test_lost_shard_reruns_alone(data_run):
    """Only the lost shard (and what is downstream of it) is recomputed, and identically."""
    shard = data_run / "results" / "base" / "en-en" / "test" / "saliency" / "smx.shards" / "1-of-2.zip"
    other = shard.with_name("2-of-2.zip")
    gathered = shard.parent.parent / "smx.zip"
    before, other_mtime = shard.read_bytes(), other.stat().st_mtime_ns
    shard.unlink()  # a shard job killed before it finished, so nothing was gathered
    gathered.unlink()
    dry = _snakemake(data_run, "-n", "--quiet", "rules")
    assert dry.returncode == 0, dry.stderr[-4000:]
    counts = {}
    for line in dry.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    assert counts.get("explain_input") == 1 and counts.get("gather_saliency") == 1, dry.stdout
    assert "explain_encoder" not in counts and "decode" not in counts, dry.stdout
    proc = _snakemake(data_run)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert shard.read_bytes() == before  # same seed, same maps
    assert other.stat().st_mtime_ns == other_mtime


sys.path.insert(0, str(ROOT / "tools"))
from rerun_plan import OVERLAYS, planned_jobs  # noqa: E402

_DOWNSTREAM_OF_SMX = {  # consumers of the SM^X stores of every run (10 stores, 2 shards each)
    "explain_input": 20, "gather_saliency": 10, "size": 10, "correlate": 10, "deletion": 14,
    "timestamps": 5, "paper_table": 6, "paper_figure": 3, "claims_check": 1, "explanation_table": 1,
    "convergence_maps": 1, "convergence": 1,  # its params hold the SM^X occlusion settings
}  # fmt: skip
_BASE_AND_CONSUMERS = {  # the base model retrained: its two runs (en-en dev, test) and everything after
    "train_model": 1, "average_checkpoints": 1, "evaluate_greedy": 1, "decode": 2, "quality_table": 1,
    "explain_input": 4, "explain_encoder": 12, "gather_saliency": 8, "size": 4, "correlate": 8,
    "deletion": 13, "timestamps": 1, "paper_table": 7, "paper_figure": 3, "claims_check": 1,
    "explanation_table": 1, "convergence_maps": 1, "convergence": 1,
}  # fmt: skip
_SHARDS_3 = {  # new shard names (i-of-3): every shard job and, downstream of the rewritten stores, the rest
    "explain_input": 30, "explain_encoder": 42, "gather_saliency": 24, "size": 20, "correlate": 24,
    "deletion": 28, "timestamps": 5, "paper_table": 8, "paper_figure": 4, "claims_check": 1,
    "explanation_table": 1,
}  # fmt: skip
#: The jobs each config change of tools/rerun_plan.py must schedule after a finished study.
EXPECTED_PLANS = {
    "nothing": {},
    "training.log_every: 7": {},
    "training.device: cpu": {},
    "decoding.device / explain.device: cpu": {},
    "decoding.splits += train": {"decode": 9, "quality_table": 1},
    "models.base.stages.asr.max_steps: 12": _BASE_AND_CONSUMERS,
    "explain.input.n_masks: 40": _DOWNSTREAM_OF_SMX,
    "explain.shards: 3": _SHARDS_3,
}


@pytest.mark.parametrize("name", [name for name, _ in OVERLAYS])
def test_config_change_reruns_exactly_its_consumers(data_run, name):
    overlay = dict(OVERLAYS)[name]
    counts = planned_jobs(data_run, overlay, ROOT / "Snakefile", ROOT / "configs" / "ci.yaml")
    counts.pop("all", None)
    assert counts == EXPECTED_PLANS[name]


def _copy_study(data_run: Path, dest: Path) -> Path:
    """A copy of the finished study (mtimes and Snakemake's metadata kept) to break things in."""
    shutil.copytree(data_run, dest, symlinks=True, ignore=shutil.ignore_patterns("locks"))
    return dest


def test_killed_shard_resumes_and_shard_count_change_recomputes_nothing(data_run, tmp_path):
    """SIGKILL after one utterance; the rerun takes it from the partial store, computes the other
    and writes the same bytes. Then three shards instead of two recompute no map at all."""
    work = _copy_study(data_run, tmp_path / "study")
    run = work / "results" / "base" / "en-en" / "test" / "saliency"
    shard = run / "smx.shards" / "1-of-2.zip"
    reference = (data_run / shard.relative_to(work)).read_bytes()
    with zipfile.ZipFile(shard) as zf:
        mine = [n[: -len(".npz")] for n in zf.namelist()]
    assert len(mine) == 2
    (key,) = list((run / "smx.partial").iterdir())
    for path in key.iterdir():  # as if this shard had never run
        if path.name.split(".")[0] in mine:
            path.unlink()
    log = work / "logs" / "explain_input" / "base" / "en-en" / "test" / "1-of-2.log"
    log.write_text("")
    target = str(shard.relative_to(work))
    env = {**os.environ, "CASPES_TEST_KILL_AFTER": f"1:{tmp_path / 'killed'}"}
    killed = _snakemake(work, target, "--forcerun", "explain_input", env=env)
    assert killed.returncode != 0 and (tmp_path / "killed").exists()
    assert not shard.exists()  # Snakemake removed the failed job's output; the partial store stays
    assert list(shard.parent.glob(".1-of-2.zip.*.tmp"))  # the killed writer's temporary file
    assert [p.name.split(".")[0] for p in key.iterdir() if p.name.split(".")[0] in mine] == [mine[0]]
    first = log.read_text()
    assert "killing this job after 1 computed utterances" in first
    assert f"{mine[0]}: I=" in first and f"{mine[1]}: I=" not in first

    resumed = _snakemake(work, target)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    second = log.read_text()  # Snakemake starts a job's log afresh: this is the second attempt's
    assert "killing this job" not in second
    assert f"{mine[0]}: finished by an earlier attempt" in second
    assert f"{mine[0]}: I=" not in second and f"{mine[1]}: I=" in second  # only the other one computed
    assert "resumed: 1 of 2 utterances were finished by an earlier attempt, 1 computed now" in second
    assert shard.read_bytes() == reference
    assert not list(shard.parent.glob(".*.tmp"))  # removed by the second attempt

    overlay = tmp_path / "shards3.yaml"
    overlay.write_text(yaml.safe_dump({"explain": {"shards": 3}}))
    gathered = run / "smx.zip"
    proc = _snakemake(work, str(gathered.relative_to(work)), overlays=(overlay,))
    assert proc.returncode == 0, proc.stderr[-4000:]
    for k in (1, 2, 3):
        text = (log.parent / f"{k}-of-3.log").read_text()
        assert "resumed: 1 of 1 utterances" in text and ": I=" not in text, text[-2000:]
    assert gathered.read_bytes() == (data_run / gathered.relative_to(work)).read_bytes()


def test_paper_outputs_and_report(data_run):
    paper = data_run / "results" / "paper"
    for name in ("table1", "table2", "table3", "table4", "table5", "table6", "discussion"):
        for ext in ("csv", "md", "tex"):
            assert (paper / f"{name}.{ext}").stat().st_size > 0, (name, ext)
    t3 = pd.read_csv(paper / "table3.csv")
    assert len(t3) == 1 + 4 + 4 and t3["l-AVG"].notna().all()
    t6 = pd.read_csv(paper / "table6.csv")
    assert sorted(t6["p_H"]) == [0.1, 0.3, 0.5, 0.7, 0.9]
    assert "\\toprule" in (paper / "table1.tex").read_text()
    for fig in ("fig2", "fig3", "fig4"):
        assert (paper / f"{fig}.png").read_bytes()[:4] == b"\x89PNG"
        assert (paper / f"{fig}.pdf").read_bytes()[:4] == b"%PDF"
    claims = (paper / "claims.md").read_text()
    assert claims.startswith("# Claims check") and claims.count("\n| ") >= 6
    proc = _snakemake(data_run, "--report", "report.html")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (data_run / "report.html").stat().st_size > 10_000


def test_one_table_builds_only_what_it_needs(tmp_path):
    """Table 3 (CA vs SM^H) needs no input saliency: a dry-run from nothing schedules no SM^X job."""
    dry = _snakemake(tmp_path, "results/paper/table3.md", "-n", "--quiet", "rules")
    assert dry.returncode == 0, dry.stderr[-4000:]
    assert "explain_encoder" in dry.stdout and "paper_table" in dry.stdout
    assert "explain_input" not in dry.stdout and "segment_spectrograms" not in dry.stdout
    assert "paper_figure" not in dry.stdout


GPU_RULES = {
    "train_model",
    "evaluate_greedy",
    "decode",
    "explain_input",
    "explain_encoder",
    "deletion",
    "convergence_maps",
}


def _dry_run_jobs(tmp_path: Path, config: str, *args: str) -> list[dict[str, str]]:
    """The jobs a dry-run of ``config`` from an empty folder prints: rule and each indented field."""
    cmd = ["snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path), "-n", *args]
    proc = subprocess.run(
        [*cmd, "--configfile", str(ROOT / config)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    jobs: list[dict[str, str]] = []
    for line in proc.stdout.splitlines():
        if line.startswith(("rule ", "localrule ")):
            jobs.append({"rule": line.split()[1].rstrip(":")})
        elif jobs and line.startswith("    ") and ":" in line:
            key, value = line.strip().split(":", 1)
            jobs[-1].setdefault(key, value.strip())
    return jobs


@pytest.mark.parametrize("config", ["config.yaml", "configs/europarl.yaml"])
def test_slurm_profile_requests_gpus_only_for_gpu_rules(tmp_path, config):
    seen: dict[str, set[bool]] = {}
    for job in _dry_run_jobs(tmp_path, config, "--profile", str(ROOT / "profiles" / "slurm")):
        if "resources" in job:
            seen.setdefault(job["rule"], set()).add("gpu=1" in job["resources"])
    assert GPU_RULES <= set(seen), sorted(GPU_RULES - set(seen))
    for name, flags in seen.items():
        assert flags == {name in GPU_RULES}, (name, flags)


def test_costliest_training_is_scheduled_first(tmp_path):
    """config.yaml: training stages outrank every other job, the deepest model's first stage comes
    first, and each model's later stage ranks below its earlier one (longest remaining work first);
    below them averaging and decoding (9), then the saliency shards of the deepest model (large 8,
    base and small 7); everything else keeps priority 0."""
    jobs = _dry_run_jobs(tmp_path, "config.yaml", "--cores", "2")
    priorities = {f"{j['rule']} {j.get('wildcards')}": int(j["priority"]) for j in jobs if "priority" in j}
    train = {k.split(" ", 1)[1]: v for k, v in priorities.items() if k.startswith("train_model ")}
    assert set(train) == {
        "model=base, stage=asr", "model=small, stage=asr", "model=small, stage=asr_st",
        "model=large, stage=asr", "model=large, stage=asr_st",
    }  # fmt: skip
    rest = {k: v for k, v in priorities.items() if not k.startswith("train_model ")}
    expected = {}
    for job in jobs:
        rule, wildcards = job["rule"], job.get("wildcards")
        if rule in ("average_checkpoints", "decode"):
            expected[f"{rule} {wildcards}"] = 9
        elif rule in ("explain_input", "explain_encoder"):
            expected[f"{rule} {wildcards}"] = 8 if "model=large," in wildcards else 7
    assert any(k.startswith("explain_input model=large") for k in expected)
    assert any(k.startswith("explain_encoder model=base") for k in expected)
    assert rest == expected  # every other job keeps priority 0
    assert max(rest.values()) < min(train.values())
    assert max(train, key=train.get) == "model=large, stage=asr"
    assert train["model=large, stage=asr"] > train["model=large, stage=asr_st"] > 0
    assert (
        train["model=small, stage=asr"]
        > train["model=small, stage=asr_st"]
        > train["model=base, stage=asr"]
        > 0
    )


def test_own_models_run_through_the_whole_dag(data_run, tmp_path):
    """configs/ci_hf.yaml over the finished CI study: tiny Whisper and Speech2Text folders built
    offline go through features, decoding, SM^X, SM^H, deletion, correlations and the tables; our
    models' results are not recomputed."""
    from caspes.decode.xattn import CrossAttentionStore
    from caspes.explain.stores import SaliencyStore
    from caspes.hf.tiny import build_tiny_speech2text, build_tiny_whisper

    study = _copy_study(data_run, tmp_path / "study")
    build_tiny_whisper(study / "tiny_models" / "whisper")
    build_tiny_speech2text(study / "tiny_models" / "speech2text")
    overlay = (ROOT / "configs" / "ci_hf.yaml",)
    ours = [
        study / "results" / "base" / "train" / "checkpoint.pt",
        *sorted((study / "results" / "small").glob("*/test/*.zip")),
        *sorted((study / "results" / "large").glob("*/test/saliency/*.zip")),
        *sorted((study / "results" / "base").glob("*/*/correlation/*.tsv")),
    ]
    before = {p: p.stat().st_mtime_ns for p in ours}
    proc = _snakemake(study, overlays=overlay)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert len(before) > 10 and {p: p.stat().st_mtime_ns for p in ours} == before
    res = study / "results"
    for name, factor in (("whisper", 2), ("speech2text", 4)):
        run = res / name / "en-en" / "test"
        feats = FeatureReader(res / name / "features" / "en" / "test.tsv")
        assert not feats.cmvn and feats.rows[0]["features"].endswith("FeatureExtractor")
        hyps = pd.read_csv(run / "hyps.tsv", sep="\t", dtype=str, keep_default_na=False)
        assert len(hyps) == len(feats)
        with (
            CrossAttentionStore(run / "xattn.zip") as xattn,
            SaliencyStore(run / "saliency" / "smx.zip") as smx,
        ):
            for uid in smx.ids:
                rec, sal = xattn[uid], smx[uid]
                frames = int(next(r for r in feats.rows if r["id"] == uid)["n_frames"])
                assert rec.encoder_length == -(-frames // factor)
                assert sal.saliency.shape[1:] == (frames, 80)  # real frames only, never the padding
                if name == "whisper":
                    assert rec.roles[:3] == ["prompt"] * 3 and rec.pieces[0] == "<|en|>"
        for kind in ("correlation", "deletion", "size"):
            assert (run / kind / "smx.tsv").stat().st_size > 0
    t3 = pd.read_csv(res / "paper" / "table3.csv")
    assert {"whisper", "speech2text"} <= set(t3["model"])
    t5 = pd.read_csv(res / "paper" / "table5.csv")
    theirs = t5[t5["model"].isin(["whisper", "speech2text"])]
    assert len(theirs) == 2 and theirs["WER"].notna().all() and theirs["SM^X deletion"].notna().all()
