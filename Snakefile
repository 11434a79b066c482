# caspes: "Cross-Attention is Half Explanation in Speech-to-Text Models", from raw audio to tables.
#
# Results layout:
#   results/data/{corpus}/{lang}/{split}.tsv            manifest (fairseq-S2T columns + langs, word times)
#   results/data/{corpus}/{lang}/audio/{split}/*.wav    16 kHz mono audio (synthetic / EuroParl-ST)
#   results/data/{corpus}/{lang}/{split}.skipped.tsv    utterances left out, with file:line and reason
#   results/data/{corpus}/{lang}/{split}.fbank.{zip,tsv} 80-dim fbank archive + its manifest
#   results/data/{corpus}/tokenizer/{tokenizer}.model   SentencePiece unigram with <lang:xx> tags
#   results/data/{corpus}/stats.tsv                     corpus statistics per language and split
#   results/{model}/train/{stage}/checkpoint_*.pt, history.tsv   training stages (asr, asr_st)
#   results/{model}/train/checkpoint.pt                 final model: average of the last checkpoints
#   results/{model}/{src}-{tgt}/{split}/hyps.tsv       beam-search hypotheses (pieces as teacher-forced later)
#   results/{model}/{src}-{tgt}/{split}/xattn.zip      cross-attention, every layer and head, per utterance
#   results/{model}/{src}-{tgt}/{split}/quality.tsv    WER (ASR) or BLEU/chrF (ST), seconds per utterance
#   results/quality.tsv                                 all of them in one table
#   results/data/{corpus}/{lang}/{split}.segments.zip   SLIC segmentations (3 levels) of the explained utterances
#   results/{model}/{src}-{tgt}/{split}/saliency/{smx,smh-p<p>}.zip   SM^X (I,T,F) / SM^H (I,T') per utterance
#   results/{model}/{src}-{tgt}/{split}/saliency/<map>.shards/         the scattered shard stores
#   results/{model}/{src}-{tgt}/{split}/{deletion,size}/<map>.tsv      deletion curve + AUC, size curve + AUC
#   results/explanations.tsv                            deletion / size AUC and cost of every map
#   results/{model}/{src}-{tgt}/{split}/correlation/<map>.tsv   Pearson r per utterance and (layer, head) set
#   results/paper/{table1..6,discussion}.{csv,md,tex}, {fig2..4}.{png,pdf}, claims.md
#   logs/{rule}/...log and benchmarks/{rule}/...tsv mirror the outputs.


from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/decode.smk"
include: "workflow/rules/explain.smk"
include: "workflow/rules/analyse.smk"
include: "workflow/rules/paper.smk"


rule all:
    default_target: True
    input:
        get_final_output(),
