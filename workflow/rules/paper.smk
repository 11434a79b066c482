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


rule claims_check:
    input:
        tables=[f"results/paper/{t}.csv" for t in table_names()],
        correlations=claims_correlations(),
    output:
        claims=report(
            "results/paper/claims.md",
            caption="../report/claims.rst",
            category="Claims",
        ),
        tests="results/paper/paired_tests.csv",
    log:
        "logs/claims_check/claims.log",
    localrule: True
    conda:
        "../../envs/caspes.yaml"
    params:
        p_h=float(P_H),
        pooling=ANALYSIS["pooling"],
        bootstrap={**ANALYSIS["bootstrap"], "seed": config["seed"]},
    script:
        "../scripts/claims_check.py"
