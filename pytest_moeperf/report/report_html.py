"""``report.html``: the markdown report as one self-contained HTML file (plots embedded as base64 PNG).

It is what people open in a browser and attach to a mail: no external file, script, font or
style sheet. The markdown is converted by Python-Markdown (tables, footnotes, heading anchors);
each ``<img src="x.png">`` whose file is in the report folder becomes a ``data:image/png;base64``
URI; tables are wrapped so a wide one scrolls instead of widening the page.
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


def render_html(markdown_text: str, folder: Path) -> str:
    """The HTML document for ``markdown_text``, with the PNGs it names from ``folder`` embedded."""
    import markdown

    body = markdown.markdown(markdown_text, extensions=["tables", "footnotes", "toc"], output_format="html")
    body = body.replace("<table>", '<div class="table-wrap"><table>').replace("</table>", "</table></div>")
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
