"""report.html: one self-contained file with every table and plot, checked in a real headless browser.

The browser test needs Chromium (Debian: ``apt-get install -y chromium``). Outside CI it skips with
that reason when Chromium is absent; under ``CI=true`` it fails instead, so CI cannot pass without
having looked at the page.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pytest_moeperf.report import cli as report_cli
from pytest_moeperf.report import tables as report_tables
from pytest_moeperf.report.report_html import render_html

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "baselines" / "h200" / "Linux-CPython-3.12-64bit" / "0001_core-matrix.json"
PAPER = ROOT / "baselines" / "h100" / "paper-h100.json"
BLUE = (0x1F, 0x77, 0xB4)  # the first series' colour in report_plots.PALETTE


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    """The committed H200 core matrix against the paper: real samples, bands, a baseline."""
    out = tmp_path_factory.mktemp("html")
    assert report_cli.run(argparse.Namespace(results=str(CORE), against=str(PAPER), output=str(out))) == 0
    return out


def _markdown_tables(md: str) -> int:
    return sum(1 for line in md.splitlines() if re.fullmatch(r"\| ---( \| ---)* \|", line))


def test_html_is_self_contained_with_every_table_and_plot(report_dir):
    md = (report_dir / "report.md").read_text(encoding="utf-8")
    page = (report_dir / "report.html").read_text(encoding="utf-8")
    assert page.count("<table>") == _markdown_tables(md) > 15
    sources = re.findall(r'<img[^>]*\ssrc="([^"]+)"', page)
    files = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(sources) == len(files) == len(report_tables.PLOT_FILES)
    for src, name in zip(sources, files):
        assert src.startswith("data:image/png;base64,"), name
        assert base64.b64decode(src.split(",", 1)[1]) == (report_dir / name).read_bytes(), name
    # nothing to fetch: no script, style sheet or resource outside the file
    assert "<script" not in page and "<link" not in page
    assert not re.findall(r'\ssrc="(?!data:)', page)
    # numbers right-aligned, text left; footnotes became links
    assert '<td class="num">202.32</td>' in page and "<td>gpt-oss-20b</td>" in page
    assert 'class="footnote-ref"' in page or "[^" not in md


def test_render_html_leaves_a_missing_or_remote_image_alone(tmp_path):
    (tmp_path / "a.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
    page = render_html("# T\n\n![a](a.png)\n\n![b](b.png)\n\n![c](../a.png)\n", tmp_path)
    assert 'src="data:image/png;base64,' + base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode() in page
    assert 'src="b.png"' in page and 'src="../a.png"' in page
    assert "<title>T</title>" in page


# --- a real browser ------------------------------------------------------------------------------

PROBE = ("<script>addEventListener('load', () => { const b = document.body;"
         " b.dataset.tables = document.querySelectorAll('table').length;"
         " b.dataset.decoded = [...document.images].filter(i => i.complete && i.naturalWidth > 0).length;"
         " b.dataset.height = document.documentElement.scrollHeight;"
         " const h2 = document.querySelector('h2'); b.dataset.firsth2 = h2 ? h2.id : '';"
         " const s = document.getElementById('summary');"
         " b.dataset.summarytop = s ? Math.round(s.getBoundingClientRect().top + scrollY) : 99999;"
         " const t = document.querySelector('#summary ~ div.table-wrap');"
         " b.dataset.summarytable = t ? Math.round(t.getBoundingClientRect().top + scrollY) : 99999; });</script>")


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("Chromium is not installed but CI=true: apt-get install -y chromium (the HTML report is "
                    "checked in a real browser)")
    pytest.skip("Chromium is not installed (Debian: apt-get install -y chromium); the browser check of "
                "report.html did not run")


def _browse(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    # a profile of its own: two Chromiums sharing one would wait on each other's lock
    return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--user-data-dir={profile}", "--virtual-time-budget=10000", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.e2e
def test_chromium_renders_every_table_and_plot(report_dir, tmp_path):
    import matplotlib.image as mpimg
    import numpy as np

    browser = _chromium()
    page = report_dir / "report.html"
    md = (report_dir / "report.md").read_text(encoding="utf-8")
    # what the browser built: a copy with a probe script (the report itself has none)
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dom = _browse(browser, tmp_path / "p1", "--window-size=1280,2000", "--dump-dom", probed.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", dom.stdout).group(1)
    attrs = dict(re.findall(r'data-(\w+)="(\d+)"', body))
    # the answer first: the page's first section is the summary, its table within the first screen
    assert re.search(r'data-firsth2="summary"', body), body
    assert int(attrs["summarytop"]) < 200 and int(attrs["summarytable"]) < 800, attrs
    assert int(attrs["tables"]) == _markdown_tables(md)
    assert int(attrs["decoded"]) == len(report_tables.PLOT_FILES)  # every plot decoded with a real size
    height = int(attrs["height"])
    assert height > 3000

    # the whole page in one screenshot, at half scale
    shot = tmp_path / "report.png"
    proc = _browse(browser, tmp_path / "p2", "--force-device-scale-factor=0.5",
                   f"--window-size=1280,{min(height + 50, 32000)}", f"--screenshot={shot}", page.as_uri())
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
    img = mpimg.imread(shot)[..., :3]
    rgb = (img * 255).round().astype(int) if img.dtype != np.uint8 else img.astype(int)
    assert rgb.shape[1] == 640 and rgb.shape[0] > 1500
    ink = rgb.min(axis=2) < 200  # anything not white-ish
    assert ink.mean() > 0.03, "the screenshot is (nearly) blank"
    rows_with_ink = np.nonzero(ink.any(axis=1))[0]
    assert rows_with_ink.max() > 0.9 * (height * 0.5), "the page is cut off"
    # the plots are painted: the first series' blue lines, bands and bars are on the page
    blue = (np.abs(rgb - np.array(BLUE)).max(axis=2) < 40).sum()
    assert blue > 2000, f"only {blue} blue pixels: the plots did not paint"
    keep = os.environ.get("MOEPERF_KEEP_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)
