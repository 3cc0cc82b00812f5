"""The results page's HTML vocabulary: escaping, tables, verdict badges, expandable notes, and
the document around them with its inline stylesheet (a projector at 1280x800, A4 on paper)
and its few lines of plain JavaScript (sorting a table by a click on its header, every
<details> opened for printing). Nothing here names a network address: the page is read offline."""

from __future__ import annotations

import html
import json
from typing import Any

# verdict -> (mark, CSS class): the mark helps, the word decides
VERDICTS = {
    "reproduced": ("✓", "v-ok"),
    "not reproduced": ("✗", "v-no"),
    "inconclusive": ("?", "v-unsure"),
    "mixed": ("±", "v-unsure"),
    "not measured": ("–", "v-none"),
    "not judged": ("–", "v-none"),
}

CSS = """
:root { --ink: #1a1a1a; --muted: #4a4a4a; --line: #c9cdd2; --card: #f5f6f8; --head: #e9ecf0;
  --ok: #17692f; --ok-bg: #dcf2e3; --no: #a4201a; --no-bg: #fbe0de; --unsure: #7a4f00;
  --unsure-bg: #ffefc2; --none: #4a4a4a; --none-bg: #e6e6e6; --differs: #fff3c4; }
* { box-sizing: border-box; }
html { font-size: 18px; }
body { margin: 0 auto; max-width: 1260px; padding: 12px 20px 40px; color: var(--ink); background: #fff;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", sans-serif;
  line-height: 1.4; }
h1 { font-size: 1.55rem; margin: 0.2em 0; }
h2 { font-size: 1.3rem; margin: 1.3em 0 0.5em; padding-bottom: 0.15em; border-bottom: 2px solid var(--line); }
h3 { font-size: 1.08rem; margin: 0.4em 0 0.3em; }
p { margin: 0.4em 0; }
.sub, .note { color: var(--muted); font-size: 0.85rem; }
.warning { border-left: 6px solid var(--unsure); background: var(--unsure-bg); padding: 0.4em 0.8em; }
.banner { border: 3px solid var(--no); background: var(--no-bg); color: var(--no); padding: 0.6em 1em;
  margin: 0.8em 0; font-weight: 600; }
.banner strong { font-size: 1.1rem; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 0.7em 1em; }
.host { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1.3fr); gap: 1em; }
dl.facts { display: grid; grid-template-columns: max-content minmax(0, 1fr); gap: 0.15em 0.9em; margin: 0; }
dl.facts dt { font-weight: 600; color: var(--muted); }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
table { border-collapse: collapse; width: 100%; font-size: 0.8rem; background: #fff; }
th, td { border: 1px solid var(--line); padding: 0.3em 0.45em; vertical-align: top; text-align: left;
  overflow-wrap: anywhere; }
thead th { background: var(--head); }
table.sortable thead th { cursor: pointer; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.grid { font-size: 0.8rem; table-layout: fixed; }
table.grid th[scope=row] { width: 24%; font-weight: 600; }
table.grid .badge { font-size: 0.95em; }
.badge { display: inline-block; max-width: 100%; padding: 0.05em 0.4em; border-radius: 1em;
  border: 2px solid currentColor; font-weight: 700; overflow-wrap: anywhere; }
.v-ok { color: var(--ok); background: var(--ok-bg); }
.v-no { color: var(--no); background: var(--no-bg); }
.v-unsure { color: var(--unsure); background: var(--unsure-bg); }
.v-none { color: var(--none); background: var(--none-bg); }
.accel-tcg { color: var(--no); font-weight: 700; }
details { margin-top: 0.25em; }
details > summary { cursor: pointer; color: var(--muted); font-size: 0.8rem; }
details[open] > summary { margin-bottom: 0.2em; }
details p { font-size: 0.8rem; }
.sides { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 0.9em; }
figure { margin: 0.8em 0 1.4em; break-inside: avoid; }
figure svg { display: block; width: 100%; height: auto; max-height: 1500px; }
figcaption { margin-top: 0.2em; }
.why { font-style: italic; color: var(--muted); border-left: 4px solid var(--line); padding-left: 0.6em; }
tr.differs > th:first-child::before { content: "≠ "; color: var(--no); font-weight: 700; }
tr.differs > td { background: var(--differs); }
@media (max-width: 1000px) {
  table.grid { font-size: 0.62rem; }
  table.grid th[scope=row] { width: 20%; }
}
@media print {
  @page { size: A4; margin: 12mm; }
  html { font-size: 10pt; }
  body { max-width: none; padding: 0; }
  .banner, .badge, .warning, tr.differs > td, thead th, .card {
    -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  .host, .sides { grid-template-columns: 1fr; }
  h2, h3 { break-after: avoid; }
  tr, figure, .card { break-inside: avoid; }
  table { font-size: 8pt; }
  table.grid { font-size: 7.5pt; }
  table.grid th[scope=row] { width: 20%; }
  details > summary { color: var(--ink); }
}
"""

# Sorting a table by a click on a header (numbers by their value, or a cell's data-sort), and
# every <details> opened for printing: the page reads the same without it.
SCRIPT = """
document.querySelectorAll("table.sortable thead th").forEach(function (th) {
  th.title = "sort by this column";
  th.addEventListener("click", function () {
    var body = th.closest("table").tBodies[0], column = th.cellIndex, down = th.dataset.dir === "up";
    th.dataset.dir = down ? "down" : "up";
    var key = function (row) {
      var cell = row.cells[column], text = cell ? (cell.dataset.sort || cell.textContent.trim()) : "";
      var value = parseFloat(text.replace(/,/g, ""));
      return isNaN(value) ? text.toLowerCase() : value;
    };
    Array.from(body.rows).sort(function (a, b) {
      var x = key(a), y = key(b), order = typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === "number" ? -1 : 1);
      return down ? -order : order;
    }).forEach(function (row) { body.appendChild(row); });
  });
});
window.addEventListener("beforeprint", function () {
  document.querySelectorAll("details").forEach(function (d) { d.open = true; });
});
"""


class Raw(str):
    """HTML already made (a cell, a badge), which `table` keeps as it is."""


def esc(value: Any) -> str:
    """Text for HTML: escaped, its line breaks kept."""
    return html.escape("-" if value is None else str(value)).replace("\n", "<br>")


def badge(verdict: str) -> Raw:
    mark, css = VERDICTS.get(verdict, ("•", "v-none"))
    return Raw(f'<span class="badge {css}">{mark} {esc(verdict)}</span>')


def details(summary: str, body: str, *, opened: bool = False) -> str:
    """An expandable note: `summary` is text, `body` HTML."""
    return f"<details{' open' if opened else ''}><summary>{esc(summary)}</summary>{body}</details>"


def cell(value: Any, sort: Any = None) -> Raw:
    """A table cell: numbers right-aligned; `sort` is the value the sorting script reads."""
    numeric = sort is not None or (isinstance(value, (int, float)) and not isinstance(value, bool))
    attrs = ' class="num"' if numeric else ""
    if sort is not None:
        attrs += f' data-sort="{esc(sort)}"'
    return Raw(f"<td{attrs}>{value if isinstance(value, Raw) else esc(value)}</td>")


def table(
    headers: list[str],
    rows: list[list[Any]],
    *,
    css: str = "sortable",
    row_head: bool = False,
    marked: list[bool] | None = None,
) -> str:
    """A table of text cells (a cell made by `cell` is kept as it is); `row_head`: the first
    cell of a row heads it; `marked`: rows to mark as differing."""
    head = "".join(f'<th scope="col">{esc(h)}</th>' for h in headers)
    body = []
    for index, row in enumerate(rows):
        cells: list[str] = [c if isinstance(c, Raw) and c.startswith("<td") else cell(c) for c in row]
        if row_head and cells:
            cells[0] = f'<th scope="row">{esc(row[0])}</th>'
        attrs = ' class="differs"' if marked and marked[index] else ""
        body.append(f"<tr{attrs}>{''.join(cells)}</tr>")
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def embedded(document: Any) -> str:
    """The document as JSON in a <script> a browser does not run: `</` written `<\\/` (and `<!--`
    as `\\u003c!--`), so that no text in it can end the element early."""
    text = json.dumps(document, indent=1, ensure_ascii=False)
    text = text.replace("</", "<\\/").replace("<!--", "\\u003c!--")
    return f'<script type="application/json" id="result">\n{text}\n</script>'


def page(title: str, body: str, document: Any) -> str:
    """The whole self-contained document."""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta name="generator" content="explorer">\n<title>{esc(title)}</title>\n'
        f"<style>{CSS}</style>\n</head>\n<body>\n{body}\n{embedded(document)}\n"
        f"<script>{SCRIPT}</script>\n</body>\n</html>\n"
    )
