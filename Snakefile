# caspes: "Cross-Attention is Half Explanation in Speech-to-Text Models", from raw audio to tables.
# The results layout and the stage map are in README.md (Results layout, Architecture).


from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/own_model.smk"
include: "workflow/rules/decode.smk"
include: "workflow/rules/explain.smk"
include: "workflow/rules/analyse.smk"
include: "workflow/rules/paper.smk"


rule all:
    default_target: True
    input:
        get_final_output(),
