"""The paper's outputs: Tables 1-6 and the Discussion table, the claims check, Figures
2-4. In: the TSVs of stages 4-6; out: CSV / Markdown / LaTeX tables, PNG / PDF figures.
"""
