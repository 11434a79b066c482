# Stage 1: corpus → manifests + audio, fbank features, tokenizers, statistics.


if DATA["source"] == "synthetic":

    rule synthesize_corpus:
        output:
            manifests=expand(
                "results/data/{{corpus}}/{lang}/{split}.tsv", lang=LANGS, split=SPLITS
            ),
            skipped=expand(
                "results/data/{{corpus}}/{lang}/{split}.skipped.tsv",
                lang=LANGS,
                split=SPLITS,
            ),
            audio=directory(expand("results/data/{{corpus}}/{lang}/audio", lang=LANGS)),
        log:
            "logs/synthesize_corpus/{corpus}.log",
        benchmark:
            "benchmarks/synthesize_corpus/{corpus}.tsv"
        conda:
            "../../envs/caspes.yaml"
        threads: 2
        resources:
            mem_mb=4000,
            runtime=60,
        params:
            out_dir=corpus_dir,
            sizes={s: DATA["synthetic"]["sizes"][s] for s in SPLITS},
            translation={lang: DATA["translation"][lang] for lang in LANGS},
            voices={lang: DATA["synthetic"]["voices"][lang] for lang in LANGS},
            rates=DATA["synthetic"]["rates"],
            pitches=DATA["synthetic"]["pitches"],
            lexicon_fraction=DATA["synthetic"]["lexicon_fraction"],
            sample_rate=config["features"]["sample_rate"],
            max_duration_s=DATA["max_duration_s"],
            on_bad=DATA["on_bad_utterance"],
            seed=config["seed"],
        script:
            "../scripts/synthesize_corpus.py"


if DATA["source"] == "europarl_st":

    rule import_europarl_st:
        output:
            manifest="results/data/{corpus}/{lang}/{split}.tsv",
            skipped="results/data/{corpus}/{lang}/{split}.skipped.tsv",
            audio=directory("results/data/{corpus}/{lang}/audio/{split}"),
        log:
            "logs/import_europarl_st/{corpus}/{lang}/{split}.log",
        benchmark:
            "benchmarks/import_europarl_st/{corpus}/{lang}/{split}.tsv"
        conda:
            "../../envs/caspes.yaml"
        resources:
            mem_mb=8000,
            runtime=120,
        params:
            root=DATA["europarl_st"]["root"],
            tgt_lang=get_tgt_lang,
            ffmpeg=DATA["europarl_st"]["ffmpeg"],
            max_duration_s=DATA["max_duration_s"],
            on_bad=DATA["on_bad_utterance"],
        script:
            "../scripts/import_europarl_st.py"


if DATA["source"] == "manifest":

    rule import_manifest:
        input:
            manifest_source,
        output:
            manifest="results/data/{corpus}/{lang}/{split}.tsv",
            skipped="results/data/{corpus}/{lang}/{split}.skipped.tsv",
        log:
            "logs/import_manifest/{corpus}/{lang}/{split}.log",
        benchmark:
            "benchmarks/import_manifest/{corpus}/{lang}/{split}.tsv"
        conda:
            "../../envs/caspes.yaml"
        params:
            tgt_lang=get_tgt_lang,
            max_duration_s=DATA["max_duration_s"],
            on_bad=DATA["on_bad_utterance"],
        script:
            "../scripts/import_manifest.py"


rule extract_fbank:
    input:
        manifest="results/data/{corpus}/{lang}/{split}.tsv",
    output:
        archive="results/data/{corpus}/{lang}/{split}.fbank.zip",
        manifest="results/data/{corpus}/{lang}/{split}.fbank.tsv",
    log:
        "logs/extract_fbank/{corpus}/{lang}/{split}.log",
    benchmark:
        "benchmarks/extract_fbank/{corpus}/{lang}/{split}.tsv"
    conda:
        "../../envs/caspes.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        num_mel_bins=config["features"]["num_mel_bins"],
        frame_length_ms=config["features"]["frame_length_ms"],
        frame_shift_ms=config["features"]["frame_shift_ms"],
        sample_rate=config["features"]["sample_rate"],
    script:
        "../scripts/extract_fbank.py"


rule train_tokenizer:
    input:
        tokenizer_train_manifests,
    output:
        model="results/data/{corpus}/tokenizer/{tokenizer}.model",
        vocab="results/data/{corpus}/tokenizer/{tokenizer}.vocab",
    log:
        "logs/train_tokenizer/{corpus}/{tokenizer}.log",
    benchmark:
        "benchmarks/train_tokenizer/{corpus}/{tokenizer}.tsv"
    conda:
        "../../envs/caspes.yaml"
    params:
        languages=tokenizer_setting("languages"),
        vocab_size=tokenizer_setting("vocab_size"),
        character_coverage=tokenizer_setting("character_coverage"),
        seed=config["seed"],
    script:
        "../scripts/train_tokenizer.py"


rule corpus_stats:
    input:
        manifests=expand(
            "results/data/{{corpus}}/{lang}/{split}.tsv", lang=LANGS, split=SPLITS
        ),
        skipped=expand(
            "results/data/{{corpus}}/{lang}/{split}.skipped.tsv",
            lang=LANGS,
            split=SPLITS,
        ),
    output:
        "results/data/{corpus}/stats.tsv",
    log:
        "logs/corpus_stats/{corpus}.log",
    benchmark:
        "benchmarks/corpus_stats/{corpus}.tsv"
    conda:
        "../../envs/caspes.yaml"
    params:
        pairs=[(lang, split) for lang in LANGS for split in SPLITS],
    script:
        "../scripts/corpus_stats.py"


rule data:
    input:
        data_outputs(),
    localrule: True
