"""Tests for caspes.tables: emphasis, the three output formats, confidence intervals, files."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest

from caspes.report.tables import (
    Cell,
    Table,
    format_value,
    mark_best,
    to_csv,
    to_latex,
    to_markdown,
    write_table,
)

NAN = float("nan")

# A layer x head grid like the paper's Table 1: 3 layers, 4 heads, and the head average.
HEADS = [
    [0.401, 0.455, 0.430, 0.414],  # mean 0.425
    [0.588, 0.571, 0.580, 0.573],  # mean 0.578 (best layer), holds the best cell 0.588
    [0.560, 0.566, 0.549, 0.557],  # mean 0.558
]
COLUMNS = ["Layer", "h1", "h2", "h3", "h4", "h-AVG"]


def _grid() -> Table:
    rows: list[list] = [[layer + 1, *heads, sum(heads) / len(heads)] for layer, heads in enumerate(HEADS)]
    table = Table("table1", "Deletion AUC per layer and head.", COLUMNS, rows)
    mark_best(table, [(r, c) for r in range(3) for c in range(1, 6)], style="bold")
    mark_best(table, [(r, 5) for r in range(3)], style="underline")
    return table


def _marks(table: Table) -> dict[tuple[int, int], tuple[bool, bool]]:
    """(row, col) -> (bold, underline) for every emphasised cell."""
    out = {}
    for r in range(len(table.rows)):
        for c in range(len(table.columns)):
            cell = table.cell(r, c)
            if cell.bold or cell.underline:
                out[(r, c)] = (cell.bold, cell.underline)
    return out


def _csv_rows(table: Table) -> list[list[str]]:
    return list(csv.reader(io.StringIO(to_csv(table))))


# ------------------------------------------------------------------------------------ mark_best


def test_plain_values_are_wrapped_into_cells():
    table = Table("t", "c", ["a", "b"], [["x", 1.5]])
    assert isinstance(table.rows[0][1], Cell)
    assert table.cell(0, 1).value == 1.5
    table.rows.append(["y", 2])  # appended later: wrapped on next access
    assert table.cell(1, 1) == Cell(2)
    table.cell(1, 1).bold = True  # the stored object is returned
    assert table.rows[1][1].bold is True


def test_mark_best_higher_is_better():
    table = Table("t", "c", ["m", "a", "b", "c"], [["x", 0.2, 0.9, 0.5]])
    mark_best(table, [(0, 1), (0, 2), (0, 3)])
    assert _marks(table) == {(0, 2): (True, False)}


def test_mark_best_lower_is_better_with_underline():
    table = Table("t", "c", ["m", "a", "b", "c"], [["x", 0.2, 0.9, -0.5]])
    mark_best(table, [(0, 1), (0, 2), (0, 3)], higher_is_better=False, style="underline")
    assert _marks(table) == {(0, 3): (False, True)}


def test_mark_best_ties_mark_all():
    table = Table("t", "c", ["a", "b", "c", "d"], [[0.7, 0.3, 0.7, 0.69999]])
    mark_best(table, [(0, c) for c in range(4)])
    assert _marks(table) == {(0, 0): (True, False), (0, 2): (True, False)}


def test_mark_best_ignores_none_nan_str_and_bool():
    table = Table("t", "c", ["a", "b", "c", "d", "e", "f"], [[None, NAN, "9.9", True, 0.1, 5]])
    mark_best(table, [(0, c) for c in range(6)])
    assert _marks(table) == {(0, 5): (True, False)}
    table2 = Table("t", "c", ["a", "b", "c"], [[None, NAN, "99"]])
    mark_best(table2, [(0, 0), (0, 1), (0, 2)])  # nothing qualifies: no error, no marks
    assert _marks(table2) == {}


def test_mark_best_only_among_given_cells_and_both_styles_combine():
    table = _grid()
    # bold: the overall best cell, underline: the best layer's h-AVG; nothing else
    assert _marks(table) == {(1, 1): (True, False), (1, 5): (False, True)}
    mark_best(table, [(r, 5) for r in range(3)], style="bold")
    assert table.cell(1, 5).bold and table.cell(1, 5).underline


def test_mark_best_compare_displayed():
    table = Table("t", "c", ["a", "b"], [[0.5881, 0.5879]])
    mark_best(table, [(0, 0), (0, 1)])
    assert _marks(table) == {(0, 0): (True, False)}
    table = Table("t", "c", ["a", "b"], [[0.5881, 0.5879]])
    mark_best(table, [(0, 0), (0, 1)], compare_displayed=True)
    assert _marks(table) == {(0, 0): (True, False), (0, 1): (True, False)}


def test_mark_best_rejects_unknown_style():
    table = Table("t", "c", ["a"], [[1.0]])
    with pytest.raises(ValueError, match="style"):
        mark_best(table, [(0, 0)], style="italic")


# ---------------------------------------------------------------------------- Table 1 grid


def test_grid_markdown():
    md = to_markdown(_grid())
    lines = md.splitlines()
    assert lines[0] == "*Table 1: Deletion AUC per layer and head.*"
    assert lines[1] == ""
    assert "**0.588**" in md
    assert "<u>0.578</u>" in md
    assert md.count("**") == 2 and md.count("<u>") == 1
    assert "**0.571**" not in md and "<u>0.558</u>" not in md
    header, rule = lines[2], lines[3]
    assert [h.strip() for h in header.strip("|").split("|")] == COLUMNS
    aligns = [a.strip() for a in rule.strip("|").split("|")]
    assert not aligns[0].endswith(":")
    assert all(a.endswith(":") and set(a) == {"-", ":"} for a in aligns[1:])
    assert len(lines) == 4 + 3
    assert md.endswith("\n") and not md.endswith("\n\n")


def test_grid_latex():
    tex = to_latex(_grid())
    assert r"\textbf{0.588}" in tex
    assert r"\underline{0.578}" in tex
    assert tex.count(r"\textbf{") == 1 and tex.count(r"\underline{") == 1
    assert r"\begin{tabular}{l r r r r r}" in tex
    assert r"Layer & h1 & h2 & h3 & h4 & h-AVG \\" in tex
    assert r"2 & \textbf{0.588} & 0.571 & 0.580 & 0.573 & \underline{0.578} \\" in tex
    assert tex.startswith("\\begin{table}[t]\n\\centering\n")
    assert tex.rstrip().endswith(
        "\\caption{Deletion AUC per layer and head.}\n\\label{tab:table1}\n\\end{table}"
    )


def test_grid_csv_has_raw_values_without_markup():
    table = _grid()
    rows = _csv_rows(table)
    assert rows[0] == COLUMNS
    assert len(rows) == 4
    for r, row in enumerate(rows[1:]):
        assert int(row[0]) == r + 1
        values = [float(x) for x in row[1:]]
        assert values == [*HEADS[r], sum(HEADS[r]) / len(HEADS[r])]  # exact, full precision
    text = to_csv(table)
    assert "*" not in text and "<u>" not in text and "textbf" not in text


# ------------------------------------------------------------------------------------ escaping


def test_latex_escapes_specials_in_text_caption_and_notes():
    table = Table(
        "table_x",
        "Deletion of 50% frames & tokens, see fig_2 ($p$ #1).",
        ["model_name", "AUC %"],
        [["base_s2t & ctc", 0.5], [r"a\b {c} ~d ^e", 1.0]],
        notes=["Top_5 & 10%"],
    )
    tex = to_latex(table)
    assert r"model\_name & AUC \% \\" in tex
    assert r"base\_s2t \& ctc & 0.500 \\" in tex
    assert r"a\textbackslash{}b \{c\} \textasciitilde{}d \textasciicircum{}e" in tex
    assert r"\caption{Deletion of 50\% frames \& tokens, see fig\_2 (\$p\$ \#1).}" in tex
    assert r"Top\_5 \& 10\%" in tex
    # No unescaped specials remain inside the cell text.
    body = tex.split(r"\midrule", 1)[1].split(r"\bottomrule")[0]
    assert "base_s2t" not in body and " & ctc" not in body
    # The label is left usable (underscore allowed in labels).
    assert r"\label{tab:table_x}" in tex


def test_markdown_escapes_pipes():
    md = to_markdown(Table("t", "", ["a|b", "v"], [["x|y", 1.0]]))
    assert r"a\|b" in md and r"x\|y" in md
    assert not md.startswith("*")  # empty caption: no caption line


# ------------------------------------------------------------------------------ None and NaN


def test_none_and_nan_rendering():
    table = Table("t", "cap", ["m", "a", "b", "c"], [["x", None, NAN, 0.25]])
    rows = _csv_rows(table)
    assert rows[1] == ["x", "", "nan", "0.25"]
    md_row = to_markdown(table).splitlines()[-1]
    assert [c.strip() for c in md_row.strip("|").split("|")] == ["x", "–", "–", "0.250"]
    assert r"x & -- & -- & 0.250 \\" in to_latex(table)
    assert "nan" not in to_markdown(table) and "nan" not in to_latex(table)


def test_format_value():
    assert format_value(0.5884, 3) == "0.588"
    assert format_value(0.5885, 1) == "0.6"
    assert format_value(-0.0001, 3) == "0.000"  # no negative zero
    assert format_value(-0.1234, 2) == "-0.12"
    assert format_value(7, 3) == "7"
    assert format_value("abc", 3) == "abc"
    assert format_value(None, 3) == "–"
    assert format_value(None, 3, for_csv=True) == ""
    assert format_value(NAN, 3) == "–"
    assert format_value(NAN, 3, for_csv=True) == "nan"
    assert format_value(0.1 + 0.2, 3, for_csv=True) == "0.30000000000000004"
    assert format_value(np.float64(0.25), 2, for_csv=True) == "0.25"
    assert format_value(np.int64(4), 2) == "4"


def test_digits_per_cell_and_table_default():
    table = Table("t", "c", ["a", "b", "c"], [[0.123456, Cell(0.123456, digits=1), 12]], digits=4)
    assert r"0.1235 & 0.1 & 12 \\" in to_latex(table)
    assert _csv_rows(table)[1] == ["0.123456", "0.123456", "12"]


def test_negative_numbers_latex_minus_and_numpy_values():
    table = Table("t", "c", ["a", "b"], [[np.float64(-0.1234), np.int64(-3)]])
    assert r"$-$0.123 & $-$3 \\" in to_latex(table)
    assert "| -0.123 |" in to_markdown(table)
    assert _csv_rows(table)[1] == ["-0.1234", "-3"]  # not "np.float64(...)"


# ---------------------------------------------------------------------------- confidence intervals


def test_ci_cells():
    table = Table(
        "table5",
        "Deletion AUC with 95% CIs.",
        ["Model", "AUC", "n"],
        [
            ["a", Cell(0.58, ci=(0.55, 0.61), bold=True, digits=2), 10],
            ["b", 0.5, 12],
        ],
    )
    md = to_markdown(table)
    assert "**0.58** ± 0.03" in md
    assert "| 0.50 |" not in md and "0.500" in md  # cell without ci keeps the table default
    tex = to_latex(table)
    assert r"\textbf{0.58} $\pm$ 0.03" in tex
    rows = _csv_rows(table)
    assert rows[0] == ["Model", "AUC", "AUC_lo", "AUC_hi", "n"]
    assert rows[1] == ["a", "0.58", "0.55", "0.61", "10"]
    assert rows[2] == ["b", "0.5", "", "", "12"]
    assert "±" not in to_csv(table)


def test_ci_extra_columns_only_where_needed_and_in_order():
    table = Table("t", "c", ["m", "x", "y"], [["r", 1.0, Cell(2.0, ci=(1.5, 2.5))], ["s", 3.0, 4.0]])
    assert _csv_rows(table)[0] == ["m", "x", "y", "y_lo", "y_hi"]
    assert "2.000 ± 0.500" in to_markdown(table)


# ------------------------------------------------------------------------------------ booktabs


def test_booktabs_rules_and_midrules():
    rows = [[f"L{i}", float(i)] for i in range(6)]
    table = Table("t", "c", ["layer", "v"], rows, midrules=[2, 4])
    lines = to_latex(table).splitlines()
    assert lines.count(r"\toprule") == 1
    assert lines.count(r"\bottomrule") == 1
    assert lines.count(r"\midrule") == 3  # after the header, before rows 2 and 4
    top = lines.index(r"\toprule")
    assert lines[top + 1] == r"layer & v \\"
    assert lines[top + 2] == r"\midrule"
    assert lines[lines.index(r"L2 & 2.000 \\") - 1] == r"\midrule"
    assert lines[lines.index(r"L4 & 4.000 \\") - 1] == r"\midrule"
    assert lines[lines.index(r"L1 & 1.000 \\") - 1] == r"L0 & 0.000 \\"
    assert lines[lines.index(r"\bottomrule") - 1] == r"L5 & 5.000 \\"
    assert lines.index(r"\toprule") < lines.index(r"\bottomrule") < lines.index(r"\end{tabular}")
    # 0 adds nothing (the header midrule is already there); out-of-range indices are errors
    table0 = Table("t", "c", ["layer", "v"], [list(r) for r in rows], midrules=[0])
    assert to_latex(table0).splitlines().count(r"\midrule") == 1
    with pytest.raises(ValueError, match="midrule"):
        Table("t", "c", ["layer", "v"], [list(r) for r in rows], midrules=[6])


def test_notes():
    table = Table("table2", "cap", ["a"], [[1.0]], notes=["First note.", "Second note."])
    md = to_markdown(table)
    assert md.endswith("| 1.000 |\n\nFirst note.\n\nSecond note.\n")
    tex = to_latex(table)
    assert r"{\footnotesize First note.\par Second note.\par}" in tex
    assert tex.index(r"\end{tabular}") < tex.index("First note.") < tex.index(r"\caption{cap}")


def test_bad_shapes_rejected():
    with pytest.raises(ValueError, match="row 1"):
        Table("t", "c", ["a", "b"], [[1, 2], [3]])
    with pytest.raises(ValueError):
        Table("t", "c", ["a"], [[1.0]], digits=-1)


# ------------------------------------------------------------------------------------ files


def test_write_table_three_files_deterministic(tmp_path):
    table = _grid()
    prefix = tmp_path / "nested" / "dir" / "table1"
    paths = write_table(table, prefix)
    assert paths == [
        prefix.with_name("table1.csv"),
        prefix.with_name("table1.md"),
        prefix.with_name("table1.tex"),
    ]
    first = [p.read_bytes() for p in paths]
    for data in first:
        assert data.endswith(b"\n")
        assert b"\r" not in data
    assert first[0].decode() == to_csv(table)
    assert first[1].decode() == to_markdown(table)
    assert first[2].decode() == to_latex(table)
    again = write_table(_grid(), str(prefix))
    assert again == paths
    assert [p.read_bytes() for p in again] == first
    assert sorted(p.name for p in prefix.parent.iterdir()) == ["table1.csv", "table1.md", "table1.tex"]


def test_write_table_keeps_dots_in_prefix(tmp_path):
    paths = write_table(Table("t", "c", ["a"], [[1]]), tmp_path / "table1.v2")
    assert [p.name for p in paths] == ["table1.v2.csv", "table1.v2.md", "table1.v2.tex"]


def test_infinities():
    table = Table("t", "c", ["a", "b"], [[math.inf, -math.inf]])
    assert r"$\infty$ & $-\infty$ \\" in to_latex(table)
    assert _csv_rows(table)[1] == ["inf", "-inf"]
