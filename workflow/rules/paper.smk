# Stage 6: the paper's tables (CSV, Markdown, LaTeX), figures (PNG, PDF) and the claims check,
# all registered for `snakemake --report report.html`.


rule paper_table:
    input:
        unpack(get_table_inputs),
    output:
        csv=report(
            "results/paper/{table}.csv",
            caption="../report/paper_table.rst",
            category="Tables",
        ),
        md="results/paper/{table}.md",
        tex="results/paper/{table}.tex",
    log:
        "logs/paper_table/{table}.log",
    localrule: True
    conda:
        "../../envs/caspes.yaml"
    params:
        pooling=ANALYSIS["pooling"],
        bootstrap={**ANALYSIS["bootstrap"], "seed": config["seed"]},
    script:
        "../scripts/paper_table.py"


rule paper_figure:
    input:
        unpack(get_figure_inputs),
    output:
        png=report(
            "results/paper/{figure}.png",
            caption="../report/paper_figure.rst",
            category="Figures",
        ),
        pdf="results/paper/{figure}.pdf",
    log:
        "logs/paper_figure/{figure}.log",
    localrule: True
    conda:
        "../../envs/caspes.yaml"
    params:
        utterance=ANALYSIS["figure_utterance"],
        pooling=ANALYSIS["pooling"],
        bootstrap={**ANALYSIS["bootstrap"], "seed": config["seed"]},
        subsampling=get_figure_subsampling,
    script:
        "../scripts/paper_figure.py"


rule convergence:
    input:
        lambda wildcards: f"{ablation_runs()[0]}/convergence.tsv",
    output:
        csv=report(
            "results/paper/convergence.csv",
            caption="../report/convergence.rst",
            category="Tables",
        ),
        md="results/paper/convergence.md",
        tex="results/paper/convergence.tex",
        png="results/paper/convergence.png",
        pdf="results/paper/convergence.pdf",
    log:
        "logs/convergence/convergence.log",
    localrule: True
    conda:
        "../../envs/caspes.yaml"
    params:
        bootstrap={**ANALYSIS["bootstrap"], "seed": config["seed"]},
    script:
        "../scripts/convergence.py"


rule claims_check:
    input:
        unpack(lambda wildcards: claims_inputs()),
    output:
        claims=report(
            "results/paper/claims.md",
            caption="../report/claims.rst",
            category="Claims",
        ),
        csv="results/paper/claims.csv",
    log:
        "logs/claims_check/claims.log",
    localrule: True
    conda:
        "../../envs/caspes.yaml"
    params:
        options=claims_options(),
    script:
        "../scripts/claims_check.py"
