"""``report.html``: the markdown report as one self-contained HTML file (plots embedded as base64 PNG).

It is what people open in a browser and attach to a mail: no external file, script, font or
style sheet. The markdown is converted by Python-Markdown (tables, footnotes, heading anchors);
each ``<img src="x.png">`` whose file is in the report folder becomes a ``data:image/png;base64``
URI; tables are wrapped so a wide one scrolls instead of widening the page.

Every value in the markdown may come from a document (a model name, a git branch, a GPU name, an
error message), so the converter is told to trust none of it: raw HTML is not passed through (a
``<script>`` in a branch name reaches the page as the text ``&lt;script&gt;``), and a link or image
may point only inside the page (``#...``) or at a file beside it, never at ``javascript:`` or
another site. The report's own markdown uses no raw HTML, so nothing of it is lost.

Tables (report_format.table's pipe tables) are rendered here, not by Python-Markdown: a 10,000-case
report holds ~100,000 table rows, which Python-Markdown's inline patterns took a minute over. A cell
is escaped first (html.escape), then given the only inline markup the report's cells use: code spans
and footnote references (linked to the footnotes Python-Markdown renders at the page's end).
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

STYLE = """
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; margin: 2em auto;
       max-width: 78em; padding: 0 1.5em; color: #1b1b1b; line-height: 1.45; }
h1 { font-size: 1.7em; border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { font-size: 1.35em; border-bottom: 1px solid #e4e4e4; padding-bottom: .2em; margin-top: 2em; }
h3 { font-size: 1.1em; margin-top: 1.6em; }
.table-wrap { overflow-x: auto; margin: .6em 0 1em; }
table { border-collapse: collapse; font-size: .9em; }
th, td { border: 1px solid #d0d0d0; padding: .25em .6em; }
th { background: #f2f4f7; text-align: center; vertical-align: bottom; }
td { text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr:nth-child(even) td { background: #fafbfc; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
code { background: #f3f3f3; padding: 0 .25em; border-radius: 3px; font-size: .92em; }
em { color: #444; }
.footnote { font-size: .88em; color: #444; }
"""

_IMG = re.compile(r'<img([^>]*?)src="([^"]+)"')
# a cell that holds a number (maybe signed, with thousands separators, a % or a footnote mark) or a dash
_NUM_CELL = re.compile(r'<td>([+\-−]?[\d,]*\.?\d+ ?%?|—)(<sup[^<]*<a[^<]*</a></sup>)?</td>')


def _embed_images(body: str, folder: Path) -> tuple[str, list[str]]:
    """Replace each local PNG reference by a data URI; returns the body and the files embedded."""
    embedded: list[str] = []

    def sub(m: re.Match) -> str:
        src = html.unescape(m.group(2))
        path = folder / src
        if "/" in src or "\\" in src or not src.lower().endswith(".png") or not path.is_file():
            return m.group(0)
        embedded.append(src)
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f'<img{m.group(1)}src="data:image/png;base64,{data}"'

    return _IMG.sub(sub, body), embedded


_SEPARATOR = re.compile(r"^\|( ?:?-{3,}:? ?\|)+$")
_CODE = re.compile(r"`([^`]+)`")
_FOOTREF = re.compile(r"\[\^(\d+)\]")
_PLACEHOLDER = "MOEPERFTABLE{}END"


def _cells(line: str) -> list[str]:
    """The cells of a pipe-table row; ``\\|`` is a pipe inside a cell (report_format.cell)."""
    inner = line.strip()[1:-1] if line.strip().endswith("|") else line.strip()[1:]
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", inner)]


def _inline(text: str, refs: set[str]) -> str:
    """A cell's HTML: escaped, then code spans and footnote references (the first of each gets the
    ``fnref`` anchor the footnote's back link points at)."""
    out = _CODE.sub(lambda m: f"<code>{m.group(1)}</code>", html.escape(text, quote=False))

    def ref(m: re.Match) -> str:
        n = m.group(1)
        anchor = "" if n in refs else f' id="fnref:{n}"'
        refs.add(n)
        return f'<sup{anchor}><a class="footnote-ref" href="#fn:{n}">{n}</a></sup>'

    return _FOOTREF.sub(ref, out)


def _table_html(lines: list[str], refs: set[str]) -> str:
    head = "".join(f"<th>{_inline(c, refs)}</th>" for c in _cells(lines[0]))
    body = "\n".join("<tr>" + "".join(f"<td>{_inline(c, refs)}</td>" for c in _cells(line)) + "</tr>"
                     for line in lines[2:])
    return (f'<div class="table-wrap"><table>\n<thead>\n<tr>{head}</tr>\n</thead>\n<tbody>\n{body}\n</tbody>\n'
            "</table></div>")


def _take_tables(markdown_text: str) -> tuple[str, list[str]]:
    """The markdown with each pipe table replaced by a placeholder paragraph, and the tables' HTML."""
    lines = markdown_text.split("\n")
    out: list[str] = []
    tables: list[str] = []
    refs: set[str] = set()
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and _SEPARATOR.match(lines[i + 1].strip()):
            j = i + 2
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            out += ["", _PLACEHOLDER.format(len(tables)), ""]
            tables.append(_table_html(lines[i:j], refs))
            i = j
        else:
            out.append(lines[i])
            i += 1
    return "\n".join(out), tables


def _safe_url(attr: str, url: str) -> bool:
    """A link inside the page, or an image file beside it: no scheme, no other host, no absolute path."""
    if attr == "href":
        return url.startswith("#")
    return bool(url) and ":" not in url and not url.startswith(("/", "\\"))


def _converter():
    """Python-Markdown that escapes raw HTML and drops any link or image source outside the report."""
    import markdown
    from markdown.treeprocessors import Treeprocessor

    class SafeUrls(Treeprocessor):
        def run(self, root):
            for el in root.iter():
                for attr in ("href", "src"):
                    if attr in el.attrib and not _safe_url(attr, el.attrib[attr]):
                        del el.attrib[attr]

    md = markdown.Markdown(extensions=["tables", "footnotes", "toc"], output_format="html")
    md.preprocessors.deregister("html_block")  # a raw HTML block becomes escaped text
    for name in ("html", "autolink", "automail"):  # so does inline HTML and <scheme:...>
        md.inlinePatterns.deregister(name)
    md.treeprocessors.register(SafeUrls(md), "moeperf_safe_urls", 1)  # after inline, footnotes and toc
    return md


def render_html(markdown_text: str, folder: Path) -> str:
    """The HTML document for ``markdown_text``, with the PNGs it names from ``folder`` embedded.

    No document value can add markup: raw HTML in ``markdown_text`` is escaped, and only links inside
    the page and images beside it keep their address (module docstring)."""
    text, tables = _take_tables(markdown_text)
    body = _converter().convert(text)
    body = body.replace("<table>", '<div class="table-wrap"><table>').replace("</table>", "</table></div>")
    for n, table_html in enumerate(tables):
        body = body.replace(f"<p>{_PLACEHOLDER.format(n)}</p>", table_html, 1)
    body = _NUM_CELL.sub(lambda m: '<td class="num">' + m.group(0)[4:], body)
    body, _ = _embed_images(body, Path(folder))
    title_match = re.search(r"^# (.+)$", markdown_text, re.M)
    title = html.escape(title_match.group(1).strip() if title_match else "pytest-moeperf report")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def write_html(markdown_text: str, folder: Path, name: str = "report.html") -> Path:
    path = Path(folder) / name
    path.write_text(render_html(markdown_text, folder), encoding="utf-8")
    return path
