"""report.html from hostile documents: no value from a document adds markup to the page.

Every string of a run (deployment cases, a failed case, serving load points, machine and commit
info) and of its baseline is replaced by arbitrary strings (a drawn pool, cycled over the fields)
that also hold a ``<zq`` tag; the
page must then hold only the tags and attributes the report itself writes, no ``<zq`` and no link
out of the page. A git branch name can hold ``<`` and ``>``, so a PR could otherwise put script
into the CI report (issue 27 item 8).
"""

from __future__ import annotations

import json
import tempfile
from html.parser import HTMLParser
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_moeperf.report import cli as report_cli
from pytest_moeperf.report.report_html import render_html

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "baselines" / "h200" / "Linux-CPython-3.12-64bit" / "0001_core-matrix.json"
PAPER = ROOT / "baselines" / "h100" / "paper-h100.json"
SERVING = ROOT / "docs" / "serving-cpu" / "run1.json"

# the markup the report writes itself (Python-Markdown: tables, footnotes, toc; report_html's page)
TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "h4", "p", "em", "strong", "code",
        "pre", "table", "thead", "tbody", "tr", "th", "td", "div", "img", "a", "sup", "hr", "ol", "ul", "li",
        "br", "nav", "span"}
ATTRS = {"class", "id", "href", "src", "alt", "title", "lang", "charset", "name", "content", "style"}
HOSTILE = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "<svg onload=alert(1)>",
           "[x](javascript:alert(1))", "![x](https://evil.example/x.png)", "<http://evil.example>", "`<b>`",
           "| a | b |", "\n\n<div onclick=x>\n\n", "&lt;script&gt;", "**<i>**", "[^1]", "# <h1>"]
TEXT = st.one_of(st.text(max_size=12), st.sampled_from(HOSTILE))
# keys whose value picks a code path: hostile or a valid value, so the MoE-vs-dense tables render too
CHOICES = {"load_mode": ["concurrency", "rate"], "architecture": ["moe", "dense"]}
KEYED = {"paper_definitions", "slo_by_name"}  # dicts whose keys are shown too


def _trimmed(path: Path, n: int) -> dict:
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["benchmarks"] = doc["benchmarks"][:n]
    mi = doc.get("machine_info") or {}
    doc["machine_info"] = {k: v for k, v in mi.items() if k != "cpu"}  # ~100 CPU flags: not shown
    return doc


def _hostile(obj, pool: list[str], counter: list[int], key: str = ""):
    """``obj`` with every string replaced by the pool's next (cycling) plus a ``<zq`` tag; a key of
    CHOICES gets, in turn, one of its valid values or a hostile string."""
    if isinstance(obj, str):
        counter[0] += 1
        text = pool[counter[0] % len(pool)]
        if key in CHOICES:
            return CHOICES[key][counter[0] % 2] if counter[0] % 3 else text
        return text + "<zq " + pool[(counter[0] * 7 + 3) % len(pool)]
    if isinstance(obj, list):
        return [_hostile(v, pool, counter, key) for v in obj]
    if isinstance(obj, dict):
        return {(_hostile(k, pool, counter) if key in KEYED else k): _hostile(v, pool, counter, k)
                for k, v in obj.items()}
    return obj


class Tags(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, attrs))

    handle_startendtag = handle_starttag


def _documents(pool: list[str]) -> tuple[dict, dict]:
    run = _trimmed(CORE, 3)
    run["benchmarks"] += _trimmed(SERVING, 4)["benchmarks"]
    run["moeperf_failed"] = [{"fullname": "benchmarks/test_deployment.py::test_generate[x-c64-n4]",
                              "case": "x-c64-n4", "error": "CUDA out of memory"}]
    return _hostile(run, pool, [0]), _hostile(_trimmed(PAPER, 4), pool, [1])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(TEXT, min_size=1, max_size=24))
def test_no_document_value_adds_markup_to_report_html(pool):
    run, base = _documents(pool)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for name, doc in (("run.json", run), ("base.json", base)):
            paths.append(Path(tmp) / name)
            paths[-1].write_text(json.dumps(doc), encoding="utf-8")
        results, baseline, serving = report_cli.compose([str(paths[0])], str(paths[1]))
        page = render_html(report_cli.markdown_of(results, baseline, serving), Path(tmp))
    assert "<zq" not in page.lower()
    parser = Tags()
    parser.feed(page)
    for tag, attrs in parser.found:
        assert tag in TAGS, (tag, attrs)
        for name, value in attrs:
            assert name in ATTRS, (tag, name, value)
            if name == "href":
                assert (value or "").startswith("#"), value
            if name == "src":
                assert ":" not in (value or "") and not (value or "").startswith("/"), value


def test_raw_html_links_and_remote_images_are_text_or_dropped(tmp_path):
    page = render_html("# T <b>\n\n<script>x</script> [a](javascript:alert(1)) [b](#ok) ![c](//evil/c.png) "
                       "<http://evil.example>\n\n<div onload=x>\n", tmp_path)
    assert "<title>T &lt;b&gt;</title>" in page
    assert "&lt;script&gt;x&lt;/script&gt;" in page and "<script" not in page
    assert "javascript:" not in page and "<a>a</a>" in page and '<a href="#ok">b</a>' in page
    assert "evil" not in page.replace("&lt;http://evil.example&gt;", "")
    assert "&lt;div onload=x&gt;" in page
