"""Table writer for the paper's tables: CSV, GitHub Markdown and LaTeX (booktabs).

A :class:`Table` is a header plus rows of :class:`Cell` objects (plain values are wrapped on
the fly). Emphasis follows the paper: **bold** marks the best value, underline the best layer;
:func:`mark_best` sets either on the best of a chosen set of cells.

Output flavours
    CSV
        Raw values only: floats with full precision (``repr``), ints as ints, no markup, ``""``
        for ``None`` and ``nan`` for NaN. Every column holding at least one confidence interval
        is followed by ``<col>_lo`` and ``<col>_hi`` columns (empty where a cell has none).
    Markdown
        A GitHub pipe table, first column left-aligned, numeric columns right-aligned; the
        caption is an italic line before the table (``*Table 1: ...*``, the number taken from
        a ``tableN`` name), the notes are paragraphs after it. Bold is ``**x**``, underline
        ``<u>x</u>``, both ``**<u>x</u>**``; ``None``/NaN print as ``–``.
    LaTeX
        ``table`` float with a booktabs ``tabular`` (``\\toprule``, ``\\midrule`` after the header
        and before each row index in :attr:`Table.midrules`, ``\\bottomrule``), then the notes,
        ``\\caption`` and ``\\label{tab:<name>}``. Bold is ``\\textbf{}``, underline
        ``\\underline{}``; text is escaped; negative numbers use a math minus (``$-$0.123``);
        ``None``/NaN print as ``--`` (an en dash once typeset).

Floats are printed with the cell's ``digits`` or else the table's. A cell with a confidence
interval ``ci=(lower, upper)`` prints as ``value ± half-width`` with half-width
``(upper - lower) / 2`` at the same precision; emphasis then applies to the value only.
All output is deterministic and ends with a newline.
"""

from __future__ import annotations

import csv
import io
import math
import numbers
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from caspes.core.atomic import atomic_write_text

__all__ = ["Cell", "Table", "format_value", "mark_best", "to_csv", "to_markdown", "to_latex", "write_table"]

DASH = "–"
"""What ``None`` and NaN print as in Markdown (LaTeX uses ``--``)."""


_STYLES = ("bold", "underline")


_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    # Wrong glyphs in the default OT1 font encoding otherwise.
    "|": r"\textbar{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    # A few non-ASCII characters that show up in headers and captions, so that pdflatex copes.
    "–": "--",
    "—": "---",
    "−": "$-$",
    "±": r"$\pm$",
    "×": r"$\times$",
    "Δ": r"$\Delta$",
    "ρ": r"$\rho$",
    "√": r"$\surd$",
}


def _normalise_value(value: object) -> float | int | str | None:
    """Turn NumPy and other numeric scalars into plain ``int``/``float`` (bools stay bools)."""
    if value is None or isinstance(value, str | bool):
        return value  # type: ignore[return-value]
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(f"cell value must be a number, a string or None, got {type(value).__name__}")


def _is_number(value: object) -> bool:
    """Whether ``value`` is an int or float (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass
class Cell:
    """One table cell: a value plus emphasis and optional precision / confidence interval.

    ``value`` ``None`` is an empty cell. ``digits`` overrides the table's default number of
    decimals for floats. ``ci`` is a ``(lower, upper)`` interval, printed as ``± half-width``
    in Markdown and LaTeX and as extra ``_lo``/``_hi`` columns in CSV.  ``extra`` holds figures
    that go to the CSV only, as ``<col>_<key>`` columns (e.g. the noise-corrected r of a mean r).
    """

    value: float | int | str | None
    bold: bool = False
    underline: bool = False
    digits: int | None = None
    ci: tuple[float, float] | None = None
    extra: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.value = _normalise_value(self.value)
        if self.digits is not None and (not isinstance(self.digits, int) or self.digits < 0):
            raise ValueError(f"digits must be a non-negative int or None, got {self.digits!r}")
        if self.ci is not None:
            lo, hi = self.ci  # raises on anything but a pair
            self.ci = (float(lo), float(hi))


def _as_cell(item: Cell | float | int | str | None) -> Cell:
    return item if isinstance(item, Cell) else Cell(item)


@dataclass
class Table:
    """A table: name (``table1``), caption, header labels and rows of cells.

    ``rows`` may hold plain values; they are wrapped into :class:`Cell` in place (also when
    rows are appended later, the next time the table is read). ``digits`` is the default
    number of decimals for floats, ``notes`` are lines printed under the table and
    ``midrules`` row indices before which LaTeX gets a ``\\midrule`` (0 is allowed and
    adds nothing, the header already has one).
    """

    name: str
    caption: str
    columns: list[str]
    rows: list[list[Cell | float | int | str | None]]
    digits: int = 3
    notes: list[str] = field(default_factory=list)
    midrules: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.digits, int) or self.digits < 0:
            raise ValueError(f"digits must be a non-negative int, got {self.digits!r}")
        self._normalise()

    def _normalise(self) -> list[list[Cell]]:
        """Check the shape, wrap plain values into cells in place, and return the rows."""
        if not self.columns:
            raise ValueError(f"{self.name}: a table needs at least one column")
        n = len(self.columns)
        for i, row in enumerate(self.rows):
            if len(row) != n:
                raise ValueError(f"{self.name}: row {i} has {len(row)} cells, expected {n}")
            for j, item in enumerate(row):
                if not isinstance(item, Cell):
                    row[j] = _as_cell(item)
        for m in self.midrules:
            if not isinstance(m, int) or not 0 <= m < len(self.rows):
                raise ValueError(f"{self.name}: midrule index {m!r} outside 0..{len(self.rows) - 1}")
        return self.rows  # type: ignore[return-value]

    def cell(self, r: int, c: int) -> Cell:
        """The :class:`Cell` at row ``r``, column ``c`` (the stored object, so edits stick)."""
        return self._normalise()[r][c]  # type: ignore[return-value]

    def _digits(self, cell: Cell) -> int:
        return self.digits if cell.digits is None else cell.digits


def format_value(value: float | int | str | None, digits: int | None = 3, *, for_csv: bool = False) -> str:
    """Shared formatting of one value.

    Floats get ``digits`` decimals (``-0.000`` is printed ``0.000``), or full precision when
    ``digits`` is None or ``for_csv`` is true; ints print as ints, strings as they are.
    ``None`` gives ``""`` for CSV and ``–`` otherwise; NaN gives ``nan`` for CSV and ``–``
    otherwise; infinities give ``inf`` / ``-inf``.
    """
    value = _normalise_value(value)
    if value is None:
        return "" if for_csv else DASH
    if isinstance(value, str | bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "nan" if for_csv else DASH
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if for_csv or digits is None:
        return repr(value)
    text = f"{value:.{digits}f}"
    if text.startswith("-") and not text.strip("-0."):
        text = text[1:]  # rounds to zero: no sign
    return text


def mark_best(
    table: Table,
    cells: Iterable[tuple[int, int]],
    higher_is_better: bool = True,
    style: str = "bold",
    *,
    compare_displayed: bool = False,
) -> None:
    """Set ``style`` ('bold' or 'underline') on the best of the given ``(row, col)`` cells.

    Only cells with a finite int/float value take part (``None``, NaN, infinities, strings and
    bools are ignored); all cells tied for best are marked. With ``compare_displayed`` the
    values are compared as printed (rounded to each cell's digits), so that two cells showing
    the same number are both marked. Nothing happens when no cell qualifies.
    """
    if style not in _STYLES:
        raise ValueError(f"style must be one of {_STYLES}, got {style!r}")
    scored: list[tuple[float, Cell]] = []
    for r, c in cells:
        cell = table.cell(r, c)
        value = cell.value
        if not _is_number(value) or not math.isfinite(value):  # type: ignore[arg-type]
            continue
        key = float(value)  # type: ignore[arg-type]
        if compare_displayed and isinstance(value, float):
            key = round(key, table._digits(cell))
        scored.append((key, cell))
    if not scored:
        return
    pick = max if higher_is_better else min
    best = pick(key for key, _ in scored)
    for key, cell in scored:
        if key == best:
            setattr(cell, style, True)


def _ci_columns(table: Table) -> list[bool]:
    rows = table._normalise()
    return [any(row[c].ci is not None for row in rows) for c in range(len(table.columns))]  # type: ignore[union-attr]


def to_csv(table: Table) -> str:
    """The table as comma-separated values: raw values, full precision, no markup.

    A column with at least one confidence interval is followed by ``<col>_lo`` and
    ``<col>_hi`` columns, empty where a cell has no interval, then by one ``<col>_<key>`` column
    per key of its cells' ``extra`` figures (in order of first appearance; empty where a cell
    lacks the key).
    """
    rows = table._normalise()
    has_ci = _ci_columns(table)
    extras: list[list[str]] = []
    for c in range(len(table.columns)):
        keys: dict[str, None] = {}
        for row in rows:
            keys.update(dict.fromkeys(row[c].extra))  # type: ignore[union-attr]
        extras.append(list(keys))
    header: list[str] = []
    for label, ci, keys in zip(table.columns, has_ci, extras):
        header.append(label)
        if ci:
            header += [f"{label}_lo", f"{label}_hi"]
        header += [f"{label}_{key}" for key in keys]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        out: list[str] = []
        for cell, ci, keys in zip(row, has_ci, extras):
            assert isinstance(cell, Cell)
            out.append(format_value(cell.value, None, for_csv=True))
            if ci:
                if cell.ci is None:
                    out += ["", ""]
                else:
                    out += [format_value(bound, None, for_csv=True) for bound in cell.ci]
            out += [format_value(cell.extra[k], None, for_csv=True) if k in cell.extra else "" for k in keys]
        writer.writerow(out)
    return buf.getvalue()


def _numeric_columns(table: Table) -> list[bool]:
    """Whether each column is right-aligned: not the first, and holding at least one number."""
    rows = table._normalise()
    flags = []
    for c in range(len(table.columns)):
        flags.append(c > 0 and any(_is_number(row[c].value) for row in rows))  # type: ignore[union-attr]
    return flags


def _half_width(cell: Cell) -> float | None:
    if cell.ci is None or not _is_number(cell.value) or not math.isfinite(cell.value):  # type: ignore[arg-type]
        return None
    half = (cell.ci[1] - cell.ci[0]) / 2
    return half if math.isfinite(half) else None


def _table_number(name: str) -> str | None:
    match = re.fullmatch(r"table[_-]?(\d+)", name.strip(), flags=re.IGNORECASE)
    return str(int(match.group(1))) if match else None


def _md_escape(text: str) -> str:
    return " ".join(text.replace("|", r"\|").split("\n"))


def _decorate(cell: Cell, text: str, underline: str, bold: str, plus_minus: str, number: Any) -> str:
    """Apply a cell's underline / bold marks (``{}`` templates) and its ``± half-width``."""
    if cell.underline:
        text = underline.format(text)
    if cell.bold:
        text = bold.format(text)
    half = _half_width(cell)
    if half is not None:
        text = plus_minus.format(text, number(half))
    return text


def _md_cell(table: Table, cell: Cell) -> str:
    digits = table._digits(cell)
    value = cell.value
    text = format_value(value, digits) if _is_number(value) else _md_escape(format_value(value, digits))
    return _decorate(cell, text, "<u>{}</u>", "**{}**", "{} ± {}", lambda v: format_value(v, digits))


def to_markdown(table: Table) -> str:
    """The table as a GitHub pipe table, with the caption as an italic line before it.

    The caption line reads ``*Table N: caption*`` when the table's name is ``tableN``
    (``*caption*`` otherwise, nothing when the caption is empty); notes follow the table,
    one paragraph each.
    """
    rows = table._normalise()
    right = _numeric_columns(table)
    header = [_md_escape(label) for label in table.columns]
    body = [[_md_cell(table, cell) for cell in row] for row in rows]  # type: ignore[arg-type]
    widths = [max([3, len(header[c])] + [len(r[c]) for r in body]) for c in range(len(header))]

    def line(items: list[str]) -> str:
        padded = [t.rjust(w) if r else t.ljust(w) for t, w, r in zip(items, widths, right)]
        return "| " + " | ".join(padded) + " |"

    rule = "| " + " | ".join("-" * (w - 1) + ":" if r else "-" * w for w, r in zip(widths, right)) + " |"
    parts: list[str] = []
    caption = " ".join(table.caption.split())
    if caption:
        number = _table_number(table.name)
        if number is not None and not caption.lower().startswith("table"):
            caption = f"Table {number}: {caption}"
        parts += ["*" + caption.replace("*", r"\*") + "*", ""]
    parts += [line(header), rule] + [line(r) for r in body]
    for note in table.notes:
        parts += ["", " ".join(note.split())]
    return "\n".join(parts) + "\n"


def _latex_escape(text: str) -> str:
    """Escape LaTeX special characters (and a few common non-ASCII symbols) in plain text."""
    return "".join(_LATEX_SPECIALS.get(ch, ch) for ch in text)


def _latex_number(value: float | int | None, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "--"
    if isinstance(value, float) and math.isinf(value):
        return r"$\infty$" if value > 0 else r"$-\infty$"
    text = format_value(value, digits)
    return "$-$" + text[1:] if text.startswith("-") else text


def _latex_cell(table: Table, cell: Cell) -> str:
    digits = table._digits(cell)
    value = cell.value
    if value is None or _is_number(value):
        text = _latex_number(value, digits)  # type: ignore[arg-type]
    else:
        text = _latex_escape(" ".join(str(value).split()))
    return _decorate(
        cell, text, r"\underline{{{}}}", r"\textbf{{{}}}", r"{} $\pm$ {}", lambda v: _latex_number(v, digits)
    )


def to_latex(table: Table) -> str:
    r"""The table as a LaTeX ``table`` float with a booktabs ``tabular``.

    Layout: ``\begin{table}[t]``, ``\centering``, ``\begin{tabular}{l r ...}`` (``r`` for
    numeric columns), ``\toprule``, header, ``\midrule``, rows (with a ``\midrule`` before each
    index in ``midrules``), ``\bottomrule``, ``\end{tabular}``, the notes in footnote size,
    ``\caption{...}``, ``\label{tab:<name>}``, ``\end{table}``.
    """
    rows = table._normalise()
    spec = " ".join("r" if r else "l" for r in _numeric_columns(table))
    breaks = {m for m in table.midrules if m > 0}
    label = re.sub(r"[^A-Za-z0-9:._-]", "-", table.name)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(_latex_escape(" ".join(c.split())) for c in table.columns) + r" \\",
        r"\midrule",
    ]
    for i, row in enumerate(rows):
        if i in breaks:
            lines.append(r"\midrule")
        lines.append(" & ".join(_latex_cell(table, cell) for cell in row) + r" \\")  # type: ignore[arg-type]
    lines += [r"\bottomrule", r"\end{tabular}"]
    if table.notes:
        lines.append(r"\par\smallskip")
        notes = r"\par ".join(_latex_escape(" ".join(n.split())) for n in table.notes)
        lines.append(rf"{{\footnotesize {notes}\par}}")
    lines += [
        rf"\caption{{{_latex_escape(' '.join(table.caption.split()))}}}",
        rf"\label{{tab:{label}}}",
        r"\end{table}",
    ]
    return "\n".join(lines) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    atomic_write_text(path, text if text.endswith("\n") else text + "\n")


def write_table(table: Table, out_prefix: str | Path) -> list[Path]:
    """Write ``<prefix>.csv``, ``<prefix>.md`` and ``<prefix>.tex`` (UTF-8, ``\\n`` line ends).

    Parent folders are created; each file is replaced atomically. Returns the three paths in
    that order.
    """
    prefix = Path(out_prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    outputs = [(".csv", to_csv(table)), (".md", to_markdown(table)), (".tex", to_latex(table))]
    paths = []
    for suffix, text in outputs:
        path = prefix.with_name(prefix.name + suffix)
        _write_atomic(path, text)
        paths.append(path)
    return paths
