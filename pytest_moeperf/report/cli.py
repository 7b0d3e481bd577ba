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

from pytest_moeperf.report.rows import load_results, read_document, split_benches
from pytest_moeperf.report.runs import load_runs
from pytest_moeperf.report.tables import Report
from pytest_moeperf.results.documents import device_name


# --------------------------------------------------------------------------------------------
# command line


def add_arguments(parser) -> None:
    parser.add_argument("results", metavar="RESULTS.json", nargs="+",
                        help="pytest-benchmark JSON of a run (--benchmark-json); several: one report, rows merged "
                             "by case id, later files winning (all of one device)")
    parser.add_argument("--against", metavar="BASELINE.json",
                        help="a baseline to compare with (e.g. baselines/h100/paper-h100.json)")
    parser.add_argument("--records", metavar="RECORDS.jsonl", action="append", default=[],
                        help="serving request records (--moeperf-serving-records) to export as requests.csv, one "
                             "row per request; repeatable")
    parser.add_argument("--bandwidth-from", metavar="RESULTS", action="append", default=None,
                        help="a run document or results log from the same board whose cases measured the memory "
                             "bandwidth (single-request cases on CUDA do): the serving per-step model's floor uses it "
                             "(matched by GPU UUID; else the datasheet's, named as such). Repeatable")
    parser.add_argument("-o", "--output", metavar="DIR", default="report",
                        help="directory for report.md, report.html, the plots and the CSV exports (default: report)")


class Inputs:
    """What the report is made of: the cases (rows.Results), a baseline, serving load points, harness
    benchmarks, and the one device they were measured on."""

    def __init__(self, results, baseline, serving: list[dict], harness: list[dict], device: str | None):
        self.results, self.baseline, self.serving, self.harness, self.device = (
            results, baseline, serving, harness, device)

    def __iter__(self):  # (results, baseline, serving), as the report's callers unpack it
        return iter((self.results, self.baseline, self.serving))


def one_device(paths: list[str], docs: list[dict]) -> str | None:
    """The device the run files were measured on; ValueError when they name several (a report compares
    like with like: another device's run goes in as --against, or in a report of its own)."""
    named = {}
    for p, doc in zip(paths, docs):
        named.setdefault(device_name(doc) or "an unnamed device", []).append(str(p))
    if len(named) > 1:
        parts = "; ".join(f"{dev} ({', '.join(files)})" for dev, files in named.items())
        raise ValueError(f"the runs were measured on {len(named)} devices: {parts}; make one report per device, "
                         f"or give the other device's run as --against BASELINE.json")
    return next(iter(named)) if named else None


def compose(paths: list[str], against: str | None = None) -> Inputs:
    """The report's inputs, each file read once; ValueError (one line) names a bad file or mixed devices."""
    docs = [read_document(p) for p in paths]
    device = one_device(paths, docs)
    serving, harness = [], []
    for doc in docs:
        s, h = split_benches(doc)
        serving += s
        harness += h
    results = load_runs(paths, allow_empty=bool(serving or harness), docs=docs)
    baseline = load_results(against) if against else None
    return Inputs(results, baseline, serving, harness, device)


def harness_section(benches: list[dict]) -> list[str]:
    """The harness's own benchmarks (the load generator against a stub), apart from the models."""
    from pytest_moeperf.metrics.formats import sig
    from pytest_moeperf.metrics.schema import key_header
    from pytest_moeperf.report.report_format import table

    if not benches:
        return []
    keys = [(k, key_header(k)) for k in ("harness_requests_per_s", "harness_added_latency_ms_p50",
                                         "harness_added_latency_ms_p99", "harness_lateness_ms_p99",
                                         "client_cpu_ms_per_request")]
    rows = [[str(b.get("name")), str(b["extra_info"].get("harness_point"))]
            + [sig(b["extra_info"].get(k)) for k, _ in keys] for b in benches]
    return (["## Harness benchmarks", "", "The load generator and client against a stub that answers at once "
             "(benchmarks/test_serving_harness.py): what the harness can drive and the latency it adds; no model.", ""]
            + table([key_header("name"), key_header("harness_point")] + [h for _, h in keys], rows) + [""])


def markdown_of(results, baseline, serving: list[dict], report: Report | None = None, boards: dict | None = None,
                serving_plots: list[tuple[str, str]] = (), harness: list[dict] = (), device: str | None = None) -> str:
    """The report's markdown (plots are referenced by name; :func:`run` draws them first). ``boards``:
    the serving points' board facts (report/crossover.py)."""
    from pytest_moeperf.report import crossover, serving_view
    from pytest_moeperf.report.summary import compose as compose_page

    if results.rows and report is None:
        report = Report(results, baseline)
    lines = []
    if serving:  # the load points, then the MoE vs dense crossover over them
        lines = serving_view.markdown(serving, serving_plots, bool(results.rows))
        lines += crossover.section(serving_view.group(serving), boards).splitlines() + [""]
    return compose_page(report if results.rows else None, serving, harness_section(list(harness)), device, lines,
                        boards)


def run(args) -> int:
    import sys

    from pytest_moeperf.report import exports, serving_plots
    from pytest_moeperf.report.report_html import write_html
    from pytest_moeperf.report.report_plots import model_palette

    paths = [args.results] if isinstance(args.results, str) else list(args.results)
    inputs = compose(paths, getattr(args, "against", None))
    from pytest_moeperf.report import crossover

    boards = crossover.boards(paths, getattr(args, "bandwidth_from", None)) if inputs.serving else None
    records = exports.read_records(list(getattr(args, "records", None) or []))
    results, baseline, serving = inputs
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    for doc in (results, baseline):
        for note in (doc.warnings if doc is not None else ()):
            print(f"warning: {note}", file=sys.stderr)
    # one colour per model on the whole page, single-request and serving plots alike
    colors = model_palette([r.model for r in results.rows] + [b["extra_info"].get("model") for b in serving])
    written, report, drawn = [], None, []
    if results.rows:
        report = Report(results, baseline)
        report.model_colors = colors
        written = report.write_plots(out)
    if serving:
        drawn = serving_plots.write_plots(serving, out, colors)
    markdown = markdown_of(results, baseline, serving, report, boards, drawn, inputs.harness, inputs.device)
    (out / "report.md").write_text(markdown, encoding="utf-8")
    page = write_html(markdown, out)
    csvs = [p for p in (exports.write_cases(results.rows, out), exports.write_points(serving, out),
                        exports.write_requests(records, out)) if p is not None]
    print(f"wrote {out / 'report.md'}, {page} (self-contained), {len(written) + len(drawn)} plots and "
          f"{', '.join(p.name for p in csvs) or 'no CSV'}")
    return 0
