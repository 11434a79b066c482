# Config validation, wildcard constraints and input functions. No rules here.

import dataclasses
import sys
from pathlib import Path
from types import SimpleNamespace

from snakemake.utils import validate

SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, SRC)
from caspes.core.config import SCHEMA_PATH, check_config  # noqa: E402
from caspes.core.runlog import export_source_path  # noqa: E402
from caspes.decode.options import decoding_result_settings  # noqa: E402
from caspes.explain.options import OcclusionOptions, SegmentationOptions  # noqa: E402
from caspes.hf.card import check_hf_entry, hf_folder_files, is_hf_entry  # noqa: E402
from caspes.train.config import split_runtime, stage_settings  # noqa: E402

validate(config, str(SCHEMA_PATH))

# Jobs (local, cluster, or in the conda env of --sdm conda) import the package from this checkout.
export_source_path(SRC)

check_config(config)

DATA = config["data"]
CORPUS = DATA["corpus"]
LANGS = DATA["languages"]
SPLITS = DATA["splits"]
TOKENIZERS = list(config["tokenizers"])
MODELS = config["models"]
STAGES = ["asr", "asr_st"]
# The user's own Hugging Face models (checked against their folders now, before any job runs) and
# the models trained here.
HF_CARDS = {
    name: {
        **check_hf_entry(name, entry, DATA),
        "targets": sorted(
            {DATA["translation"][lang] for lang in entry["languages"]}
            if "st" in entry["tasks"]
            else set()
        ),
    }
    for name, entry in MODELS.items()
    if is_hf_entry(entry)
}
TRAINED = [name for name in MODELS if name not in HF_CARDS]


wildcard_constraints:
    corpus=CORPUS,
    lang="|".join(LANGS),
    split="|".join(SPLITS),
    tokenizer="|".join(TOKENIZERS) if TOKENIZERS else "(?!)",
    model="|".join(MODELS) if MODELS else "(?!)",
    src="|".join(LANGS),
    tgt="|".join(sorted(set(LANGS) | set(DATA["translation"].values()))),
    stage="|".join(STAGES),
    p_h=r"[0-9]*\.?[0-9]+",
    map=r"smx|smh-p[0-9]*\.?[0-9]+",
    dmap=r"smx|smx-(max2d|avg2d|max1d_avg1d)|ca|smh-p[0-9]*\.?[0-9]+",
    table="table[1-6]|discussion|timestamps",
    figure="fig[2-4]|timestamps",


def data_outputs():
    """Every file of the data stage."""
    return (
        expand(
            "results/data/{corpus}/{lang}/{split}.fbank.tsv",
            corpus=CORPUS,
            lang=LANGS,
            split=SPLITS,
        )
        + expand(
            "results/data/{corpus}/tokenizer/{tokenizer}.model",
            corpus=CORPUS,
            tokenizer=TOKENIZERS,
        )
        + [f"results/data/{CORPUS}/stats.tsv"]
    )


def train_outputs():
    """The final (averaged) checkpoint of every model and its greedy dev-set quality."""
    return expand(
        "results/{model}/train/{name}",
        model=TRAINED,
        name=["checkpoint.pt", "greedy_dev.tsv"],
    )


def model_directions(model):
    """(source, target) language pairs a model is decoded on: ASR src-src, ST src-translation."""
    pairs = []
    for lang in MODELS[model]["languages"]:
        if "asr" in MODELS[model]["tasks"]:
            pairs.append((lang, lang))
        if "st" in MODELS[model]["tasks"]:
            pairs.append((lang, DATA["translation"][lang]))
    return pairs


def decode_outputs(name):
    """One decode output file per model, direction and decoded split."""
    return [
        f"results/{model}/{src}-{tgt}/{split}/{name}"
        for model in MODELS
        for src, tgt in model_directions(model)
        for split in config["decoding"]["splits"]
    ]


def get_final_output():
    outputs = data_outputs() + train_outputs()
    if MODELS:
        outputs += ["results/quality.tsv"]
    return outputs + explain_outputs() + paper_outputs()


def tokenizer_train_manifests(wildcards):
    """Train manifests of every source language whose transcript or translation is in the set."""
    langs = config["tokenizers"][wildcards.tokenizer]["languages"]
    return [
        f"results/data/{wildcards.corpus}/{src}/train.tsv"
        for src in LANGS
        if src in langs or DATA["translation"][src] in langs
    ]


def manifest_source(wildcards):
    """The user's manifest for data.source == 'manifest'."""
    return DATA["manifests"][wildcards.lang][wildcards.split]


def corpus_dir(wildcards):
    return f"results/data/{wildcards.corpus}"


def get_tgt_lang(wildcards):
    """Translation language of a source language."""
    return DATA["translation"][wildcards.lang]


def tokenizer_setting(key):
    """Input function for one setting of the tokenizer named by the wildcard."""

    def get(wildcards):
        return config["tokenizers"][wildcards.tokenizer][key]

    return get


def get_model_manifests(split):
    """Input function: the feature manifests of a split in every language of the model."""

    def get(wildcards):
        langs = MODELS[wildcards.model]["languages"]
        return [f"results/data/{CORPUS}/{lang}/{split}.fbank.tsv" for lang in langs]

    return get


def get_model_tokenizer(wildcards):
    if wildcards.model in HF_CARDS:
        return f"results/{wildcards.model}/model.json"  # the model's own tokenizer
    return (
        f"results/data/{CORPUS}/tokenizer/{MODELS[wildcards.model]['tokenizer']}.model"
    )


def get_checkpoint(wildcards):
    """What the model is loaded from: our averaged checkpoint, or a Hugging Face model's card."""
    if wildcards.model in HF_CARDS:
        return f"results/{wildcards.model}/model.json"
    return f"results/{wildcards.model}/train/checkpoint.pt"


def get_subsampling(wildcards):
    """Input frames per encoder step: 4 for ours, the adapted model's own (Whisper 2)."""
    card = HF_CARDS.get(wildcards.model)
    return card["subsampling"] if card else 4


def get_hf_folder_files(wildcards):
    return hf_folder_files(HF_CARDS[wildcards.model]["path"])


def get_hf_card(wildcards):
    return HF_CARDS[wildcards.model]


def model_stages(model):
    """Training stages of a model, in order."""
    return [s for s in STAGES if s in MODELS[model]["stages"]]


def get_init_checkpoint(wildcards):
    """A later stage starts from the weights of the stage before it."""
    stages = model_stages(wildcards.model)
    if wildcards.stage not in stages:
        raise ValueError(
            f"models.{wildcards.model}.stages has no stage '{wildcards.stage}'"
        )
    i = stages.index(wildcards.stage)
    return (
        []
        if i == 0
        else [f"results/{wildcards.model}/train/{stages[i - 1]}/checkpoint_last.pt"]
    )


def get_model_dims(wildcards):
    return dict(MODELS[wildcards.model]["dims"])


# Params hold only what changes a rule's outputs (Snakemake reruns a job whose params change): each
# is built from the option object its package function takes. Device, threads, logging and how the
# work is split into jobs are read by the scripts from the config at run time (README: "What reruns what").


def get_train_settings(wildcards):
    """TrainConfig fields of one stage that shape the model (defaults filled in; no device,
    thread or logging keys): 'training', the stage's overrides, seed, stage."""
    return split_runtime(stage_settings(config, wildcards.model, wildcards.stage))[0]


def get_train_priority(wildcards):
    """Longest training first: a model's remaining training cost (steps left × layers × width²).

    With one training job per core, starting the most expensive model first keeps the two
    cores busy until the end (the cheaper models follow each other on the other core); all
    training stages also outrank the jobs that consume a finished model.
    """
    model = MODELS[wildcards.model]
    dims = model["dims"]
    stages = model_stages(wildcards.model)
    steps = sum(
        model["stages"][s]["max_steps"] for s in stages[stages.index(wildcards.stage) :]
    )
    width = (dims["d_model"] / 100) ** 2
    cost = steps * (dims["encoder_layers"] + dims["decoder_layers"]) * width / 1000
    return 10 + int(cost)


def get_explain_priority(wildcards):
    """Saliency jobs of the deepest model first: its shards are the longest, and starting them
    first keeps a long shard from running alone on one core at the end of the run. Below every
    training job (priority >= 10) and below the jobs that make a model's saliency runnable
    (averaging and decoding, 9); Hugging Face models (no dims) come last."""
    dims = MODELS[wildcards.model].get("dims") or {}
    layers = dims.get("encoder_layers", 0) + dims.get("decoder_layers", 0)
    return 1 + min(7, layers)


def get_final_stage_dir(wildcards):
    return f"results/{wildcards.model}/train/{model_stages(wildcards.model)[-1]}"


def get_final_stage_checkpoint(wildcards):
    return f"{get_final_stage_dir(wildcards)}/checkpoint_last.pt"


def get_average_last(wildcards):
    return MODELS[wildcards.model]["average_last"]


def get_model_languages(wildcards):
    return MODELS[wildcards.model]["languages"]


def get_model_tasks(wildcards):
    return MODELS[wildcards.model]["tasks"]


def get_task(wildcards):
    return "asr" if wildcards.src == wildcards.tgt else "st"


def get_decode_manifest(wildcards):
    """The features of the source language; the direction must be one the model was trained for."""
    if (wildcards.src, wildcards.tgt) not in model_directions(wildcards.model):
        raise ValueError(
            f"model '{wildcards.model}' is not trained for {wildcards.src}-{wildcards.tgt} "
            f"(directions: {model_directions(wildcards.model)})"
        )
    if wildcards.model in HF_CARDS:  # the model's own features
        return (
            f"results/{wildcards.model}/features/{wildcards.src}/{wildcards.split}.tsv"
        )
    return f"results/data/{CORPUS}/{wildcards.src}/{wildcards.split}.fbank.tsv"


# --------------------------------------------------------------------------- explain
EXPLAIN = config["explain"]
P_H = f"{EXPLAIN['encoder']['p']:g}"


def explained_sets():
    """(model, src, tgt, split) of every explained decoding, as explain.splits asks."""
    sets = []
    for split, models in EXPLAIN["splits"].items():
        for model in MODELS if models == "all" else models:
            sets += [(model, src, tgt, split) for src, tgt in model_directions(model)]
    return sets


def explained_maps():
    """The saliency stores of the study: SM^X and SM^H at the configured p_H."""
    return ["smx", f"smh-p{P_H}"]


def explain_outputs():
    """Every saliency store with its deletion curve and size score, and the summary table."""
    if not MODELS:
        return []
    files = [
        f"results/{model}/{src}-{tgt}/{split}/{kind}/{name}"
        for model, src, tgt, split in explained_sets()
        for m in explained_maps()
        for kind, name in [
            ("saliency", f"{m}.zip"),
            ("deletion", f"{m}.tsv"),
            ("size", f"{m}.tsv"),
        ]
    ]
    return files + ["results/explanations.tsv"]


def explained_correlations():
    """The correlation file of every saliency store (their reliability goes to explanations.tsv)."""
    return [
        f"results/{model}/{src}-{tgt}/{split}/correlation/{m}.tsv"
        for model, src, tgt, split in explained_sets()
        for m in explained_maps()
    ]


def get_segments(wildcards):
    if wildcards.model in HF_CARDS:
        return f"results/{wildcards.model}/features/{wildcards.src}/{wildcards.split}.segments.zip"
    return f"results/data/{CORPUS}/{wildcards.src}/{wildcards.split}.segments.zip"


def get_deletion_maps(wildcards):
    """The store a deletion map is read from: the cross-attention (ca) or a saliency store."""
    run = f"results/{wildcards.model}/{wildcards.src}-{wildcards.tgt}/{wildcards.split}"
    if wildcards.dmap == "ca":
        return f"{run}/xattn.zip"
    store = (
        "smx" if wildcards.dmap.startswith("smx") else wildcards.dmap
    )  # smx-<pooling> reads smx
    return f"{run}/saliency/{store}.zip"


def get_map_kind(wildcards):
    """'input' for smx, 'encoder' for smh-p<p>."""
    return "input" if wildcards.map == "smx" else "encoder"


def get_occlusion_settings(kind):
    """Input function: OcclusionOptions fields of SM^X ('input') or SM^H ('encoder')."""

    def get(wildcards):
        section = EXPLAIN[kind]
        p = section["p"] if kind == "input" else float(wildcards.p_h)
        options = OcclusionOptions(
            n_masks=section["n_masks"],
            p=p,
            seed=config["seed"],
            batch_size=EXPLAIN["batch_size"],
            batch_frames=EXPLAIN["batch_frames"],
            autocast_bf16=EXPLAIN["bf16"],
        )
        return dataclasses.asdict(options)

    return get


#: Params of the decode rule: DecodingOptions, the batch size and COMET (not the splits or device).
DECODE_SETTINGS = decoding_result_settings(
    config["decoding"], extra=("batch_frames", "comet_checkpoint")
)
#: Params of the deletion rule: the DecodingOptions of its re-decoding.
DELETION_DECODING = decoding_result_settings(config["decoding"])
#: Params of segment_spectrograms: the SLIC settings of explain.input (not n_masks or p).
SEGMENTATION = SegmentationOptions.from_config(EXPLAIN["input"]).asdict()


# --------------------------------------------------------------------------- analysis and paper
ANALYSIS = config["analysis"]
MAIN_SPLIT = ANALYSIS["split"]
ABLATION = ANALYSIS["ablation_model"] if MODELS else None
P_GRID = [f"{p:g}" for p in ANALYSIS["p_grid"]]
TABLES = ["table1", "table2", "table3", "table4", "table5", "table6", "discussion"]
FIGURES = ["fig2", "fig3", "fig4"]


def run_dir(model, src, tgt, split):
    return f"results/{model}/{src}-{tgt}/{split}"


def main_runs(models=None):
    """Run folders of the main split for the given models (default all), every direction."""
    return [
        run_dir(m, s, t, MAIN_SPLIT)
        for m in (MODELS if models is None else models)
        for s, t in model_directions(m)
    ]


def ablation_runs():
    """The ablation model's first direction on the ablation split (the paper: base, en ASR, dev)."""
    s, t = model_directions(ABLATION)[0]
    return [run_dir(ABLATION, s, t, ANALYSIS["ablation_split"])]


def table_names():
    """Tables of this study: the ablation tables only when there is an ablation model."""
    if not MODELS:
        return []
    skip = set() if ABLATION else {"table1", "table4", "table6", "discussion"}
    if len(MODELS) < 2 and ABLATION:
        skip.add("table2")
    return [t for t in TABLES if t not in skip] + (
        ["timestamps"] if timestamp_runs() else []
    )


def timestamp_runs():
    """ASR runs of the main split, when the corpus has ground-truth word times (the embedded one)."""
    if not MODELS or DATA["source"] != "synthetic":
        return []
    return [
        run_dir(m, s, t, MAIN_SPLIT)
        for m in MODELS
        for s, t in model_directions(m)
        if s == t
    ]


def get_table_inputs(wildcards):
    """Input files of one paper table (lists named as caspes.report.paper_tables.build_table expects)."""
    t = wildcards.table
    others = [m for m in MODELS if m != ABLATION] or list(MODELS)
    if t == "table1":
        return {
            "correlation": [f"{r}/correlation/smx.tsv" for r in main_runs([ABLATION])]
        }
    if t == "table2":
        return {"correlation": [f"{r}/correlation/smx.tsv" for r in main_runs(others)]}
    if t == "table3":
        return {"correlation": [f"{r}/correlation/smh-p{P_H}.tsv" for r in main_runs()]}
    if t == "table4":
        return {
            "correlation": [f"{r}/correlation/smx.tsv" for r in ablation_runs()],
            "deletion": [
                f"{r}/deletion/smx-{p}.tsv"
                for r in ablation_runs()
                for p in ("avg2d", "max1d_avg1d", "max2d")
            ],
        }
    if t == "table5":
        return {
            "quality": [f"{r}/quality.tsv" for r in main_runs()],
            "deletion": [
                f"{r}/deletion/{m}.tsv" for r in main_runs() for m in explained_maps()
            ],
            "sizes": [
                f"{r}/size/{m}.tsv" for r in main_runs() for m in explained_maps()
            ],
            "correlation": [
                f"{r}/correlation/{m}.tsv"
                for r in main_runs()
                for m in explained_maps()
            ],
        }
    if t == "table6":
        return {
            "correlation": [
                f"{r}/correlation/smh-p{p}.tsv" for r in ablation_runs() for p in P_GRID
            ],
            "deletion": [
                f"{r}/deletion/smh-p{p}.tsv" for r in ablation_runs() for p in P_GRID
            ],
        }
    if t == "timestamps":
        return {"timestamps": [f"{r}/timestamps.tsv" for r in timestamp_runs()]}
    if t == "discussion":
        return {
            "deletion": [
                f"{r}/deletion/{m}.tsv"
                for r in main_runs([ABLATION])
                for m in ("ca", "smx-max2d", "smx")
            ]
        }
    raise ValueError(f"unknown table {t}")


def figure_model():
    if ANALYSIS["figure_model"]:
        return ANALYSIS["figure_model"]
    multi = [m for m in MODELS if "st" in MODELS[m]["tasks"]]
    return multi[-1] if multi else list(MODELS)[-1]


def get_figure_inputs(wildcards):
    """Stores shown by one figure: the ablation model's first direction (fig2, fig3) on the ablation
    split, or the figure model's directions on the main split (fig4)."""
    if wildcards.figure == "timestamps":
        return {"timestamps": [f"{r}/timestamps.tsv" for r in timestamp_runs()]}
    if wildcards.figure in ("fig2", "fig3"):
        model = ABLATION or list(MODELS)[0]
        split = ANALYSIS["ablation_split"] if ABLATION else MAIN_SPLIT
        run = run_dir(model, *model_directions(model)[0], split)
        return {
            "xattn": [f"{run}/xattn.zip"],
            "smx": [f"{run}/saliency/smx.zip"],
            "smh": [f"{run}/saliency/smh-p{P_H}.zip"],
        }
    runs = main_runs([figure_model()])
    return {
        "xattn": [f"{r}/xattn.zip" for r in runs],
        "smx": [],
        "smh": [f"{r}/saliency/smh-p{P_H}.zip" for r in runs],
    }


def get_figure_subsampling(wildcards):
    """The subsampling of the model a figure shows (the timestamps bars show none: 4, unused)."""
    if wildcards.figure in ("fig2", "fig3"):
        model = ABLATION or list(MODELS)[0]
    elif wildcards.figure == "fig4":
        model = figure_model()
    else:
        return 4
    card = HF_CARDS.get(model)
    return card["subsampling"] if card else 4


def claims_inputs():
    """Per-utterance files of the claims check (caspes.report.claims_data.load_study): the
    correlations of every main-split run, of the runs explained on the ablation split (the "best
    layer / head" is chosen there) and of the p_H grid; the deletion curves and re-decoded
    hypotheses of Table 4, Table 6 and the Discussion with their runs' references; the timestamps.
    """
    if not MODELS:
        return {}
    sel = ANALYSIS["ablation_split"]
    dev_runs = [
        run_dir(m, s, t, split)
        for m, s, t, split in explained_sets()
        if split == sel and split != MAIN_SPLIT
    ]
    corr = [
        f"{r}/correlation/{m}.tsv"
        for r in main_runs() + dev_runs
        for m in explained_maps()
    ]
    dele = []
    if ABLATION:
        corr += [
            f"{r}/correlation/smh-p{p}.tsv" for r in ablation_runs() for p in P_GRID
        ]
        dele += [
            (r, d)
            for r in ablation_runs()
            for d in [f"smx-{p}" for p in ("avg2d", "max1d_avg1d", "max2d")]
            + [f"smh-p{p}" for p in P_GRID]
        ]
        dele += [
            (r, d) for r in main_runs([ABLATION]) for d in ("ca", "smx-max2d", "smx")
        ]
    return {
        "correlations": list(dict.fromkeys(corr)),
        "deletion_curves": [f"{r}/deletion/{d}.tsv" for r, d in dele],
        "deletion_hyps": [f"{r}/deletion/{d}.hyps.tsv" for r, d in dele],
        "references": list(dict.fromkeys(f"{r}/hyps.tsv" for r, _ in dele)),
        "timestamps": [f"{r}/timestamps.tsv" for r in timestamp_runs()],
    }


def claims_options():
    """caspes.report.claims.ClaimOptions of the study (analysis.claims, bootstrap and seed)."""
    claims = ANALYSIS["claims"]
    return {
        "resamples": ANALYSIS["bootstrap"]["resamples"],
        "seed": config["seed"],
        "min_utterances": claims["min_utterances"],
        "reliability_smx": claims["reliability"]["smx"],
        "reliability_smh": claims["reliability"]["smh"],
        "pooling": ANALYSIS["pooling"],
        "main_split": MAIN_SPLIT,
        "selection_split": ANALYSIS["ablation_split"],
        "ablation_model": ABLATION,
        "p_h": float(P_H),
    }


def convergence_outputs():
    """The convergence table and figure (none without an ablation model)."""
    if not MODELS or ABLATION is None:
        return []
    return [
        f"results/paper/convergence.{ext}" for ext in ("csv", "md", "tex", "png", "pdf")
    ]


def get_convergence_settings(wildcards):
    """Params of convergence_maps: the sweep, the occlusion settings of both maps, the comparison."""
    sweep = ANALYSIS["convergence"]
    if sweep["utterances"] > (EXPLAIN["max_utterances"] or sweep["utterances"]):
        raise ValueError(
            f"analysis.convergence.utterances ({sweep['utterances']}) exceeds explain.max_utterances "
            f"({EXPLAIN['max_utterances']}): only those utterances are segmented"
        )
    encoder = get_occlusion_settings("encoder")(SimpleNamespace(p_h=P_H))
    return {
        "input_options": get_occlusion_settings("input")(wildcards),
        "encoder_options": encoder,
        "input_budgets": sweep["input_budgets"],
        "encoder_budgets": sweep["encoder_budgets"],
        "utterances": sweep["utterances"],
        "pooling": ANALYSIS["pooling"],
        "factor": get_subsampling(wildcards),
        "ca_norm": ANALYSIS["ca_norm"],
        "sm_norm": ANALYSIS["sm_norm"],
    }


def paper_outputs():
    """Every table (csv, md, tex), figure (png, pdf) and the claims check."""
    if not MODELS:
        return []
    files = [
        f"results/paper/{t}.{ext}"
        for t in table_names()
        for ext in ("csv", "md", "tex")
    ]
    figures = FIGURES + (["timestamps"] if timestamp_runs() else [])
    files += [f"results/paper/{f}.{ext}" for f in figures for ext in ("png", "pdf")]
    files += convergence_outputs()
    return files + ["results/paper/claims.md", "results/paper/claims.csv"]
