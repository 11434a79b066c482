"""The paper's outputs: Tables 1-6 and the Discussion table, the claims check, Figures
2-4 (and the word-timestamps table and figure), plus the study-wide quality and explanation
summaries. In: the TSVs and stores of stages 4-6; out: CSV / Markdown / LaTeX tables, PNG / PDF
figures, TSV summaries.

Modules: ``tables`` (the table writer), ``results`` (reading result files), ``paper_tables``,
``claims``, ``figure_data`` and ``figures`` (what the figures show, and drawing them),
``paper_figures`` (each figure from the workflow's files), ``summaries``.
"""
