"""``python -m pytest_moeperf report RESULTS.json [MORE.json ...] [--against BASELINE.json] -o DIR``.

Writes ``DIR/report.md`` (the paper's Tables 1-8, Tables 9-12 where the ablation cases
exist, run metadata, metric definitions) and PNG plots, computed from the
pytest-benchmark JSON alone. Several RESULTS files make one report (runs.py: rows merged by
case id, later files winning), e.g. a core matrix and a long-context run; failed cases
(``moeperf_failed``) show where their numbers would be (failed_cases.py). With ``--against``
every table gains baseline and change-% columns (matched by case id) and the plots show the
baseline dashed / hatched.

Like is compared with like: a metric is compared only where the baseline has it under
the same definition. A baseline transcribed from the paper (``extra_info.source ==
"paper"``) has no decode throughput: its "TPOT (tok/s)" is ``e2e_tokens_per_s``
(prefill included), and its ``ape_tpot`` / ``tokens_per_s_per_gb`` are built on that
e2e figure, so they are compared with the run's e2e-based APE, not with its decode APE.

matplotlib is imported only inside :func:`run` (Agg backend).
"""

from __future__ import annotations

from pathlib import Path
from pytest_moeperf.report.rows import _serving_benches, load_results
from pytest_moeperf.report.runs import load_runs
from pytest_moeperf.report.tables import Report


# --------------------------------------------------------------------------------------------
# command line


def add_arguments(parser) -> None:
    parser.add_argument("results", metavar="RESULTS.json", nargs="+",
                        help="pytest-benchmark JSON of a run (--benchmark-json); several: one report, rows merged "
                             "by case id, later files winning")
    parser.add_argument("--against", metavar="BASELINE.json",
                        help="a baseline to compare with (e.g. baselines/h100/paper-h100.json)")
    parser.add_argument("-o", "--output", metavar="DIR", default="report",
                        help="directory for report.md and the PNG plots (default: report)")


def run(args) -> int:
    from pytest_moeperf.serving import report as serving_report

    paths = [args.results] if isinstance(args.results, str) else list(args.results)
    serving = [b for p in paths for b in _serving_benches(p)]
    results = load_runs(paths, allow_empty=bool(serving))
    baseline = load_results(args.against) if getattr(args, "against", None) else None
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    import sys

    for doc in (results, baseline):
        for note in (doc.warnings if doc is not None else ()):
            print(f"warning: {note}", file=sys.stderr)
    markdown, written = "", []
    if results.rows:
        report = Report(results, baseline)
        written = report.write_plots(out)
        markdown = report.markdown()
    if serving:  # load points of benchmarks/test_serving.py: their own section and plots
        written += serving_report.write_plots(serving, out)
        markdown = (markdown + "\n" if markdown else "# pytest-moeperf report\n\n") + serving_report.markdown(serving)
    (out / "report.md").write_text(markdown, encoding="utf-8")
    from pytest_moeperf.report.report_html import write_html

    page = write_html(markdown, out)
    print(f"wrote {out / 'report.md'}, {page} (self-contained) and {len(written)} plots")
    return 0
