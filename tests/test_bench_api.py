"""pytest-benchmark through its public hooks, and the one private access (bench_api.benchmark_storage)."""

from __future__ import annotations

import argparse
import json

import pytest

from pytest_moeperf.results import bench_api


def test_private_storage_access_still_finds_pytest_benchmarks_storage(pytestconfig, tmp_path):
    # Fails loudly if pytest-benchmark renames its session attribute or the storage on it: the
    # in-pytest gate (--benchmark-compare) and the xdist merge (--benchmark-save) read it here.
    storage = bench_api.benchmark_storage(pytestconfig)
    assert storage is not None, "pytest-benchmark no longer keeps its session at config._benchmarksession.storage"
    for method in ("save", "load"):
        assert callable(getattr(storage, method, None)), f"pytest-benchmark's storage has no {method}()"


@pytest.mark.e2e
def test_storage_saves_and_loads_a_document_built_by_the_public_hooks(pytester):
    # A real pytest-benchmark session: the document comes from its own hooks, the storage from
    # the private access, and the file it saves loads back as the same benchmarks.
    pytester.makeconftest("""
        import json, pytest
        from pytest_moeperf.results import bench_api

        BENCH = {"name": "test_x[a]", "fullname": "test_x.py::test_x[a]", "group": None, "params": {"p": "a"},
                 "param": "a", "extra_info": {"ttft_ms": 1.5}, "options": {},
                 "stats": {"min": 1.0, "max": 2.0, "mean": 1.5, "rounds": 2, "data": [1.0, 2.0]}}

        def pytest_sessionfinish(session):
            config = session.config
            doc = bench_api.document(config, [BENCH], bench_api.machine_info(config), bench_api.commit_info(config),
                                     include_data=False)
            bench_api.benchmark_storage(config).save(doc, "hooks")
            loaded = [d for _, d in bench_api.benchmark_storage(config).load("*hooks")]
            print("\\nLOADED", json.dumps(loaded[-1]["benchmarks"]))
            print("MACHINE", sorted(doc["machine_info"]))
    """)
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-s",
                                          f"--benchmark-storage=file://{pytester.path / 'store'}")
    assert result.ret == 0, result.stdout.str()
    line = next(ln for ln in result.stdout.lines if ln.startswith("LOADED "))
    (bench,) = json.loads(line[len("LOADED "):])
    assert bench["extra_info"] == {"ttft_ms": 1.5} and bench["name"] == "test_x[a]"
    assert "data" not in bench["stats"]  # include_data=False, as --benchmark-save without --benchmark-save-data
    machine = next(ln for ln in result.stdout.lines if ln.startswith("MACHINE "))
    assert "python_version" in machine  # pytest-benchmark's own machine info hook ran


@pytest.mark.parametrize("target_kind", ["path", "handle"])
def test_write_json_option_takes_a_path_or_an_open_handle(tmp_path, target_kind):
    # 5.3 keeps --benchmark-json as a path; 5.2 parsed it into an open binary handle
    path = tmp_path / "out.json"

    class Config:
        def getoption(self, name, default=None):
            assert name == "benchmark_json"
            return path if target_kind == "path" else open(path, "wb")

    assert bench_api.write_json_option(Config(), '{"a": 1}') == str(path)
    assert json.loads(path.read_text()) == {"a": 1}


@pytest.mark.e2e
def test_a_refused_benchmark_json_path_leaves_the_file_as_it_was(pytester):
    # Issue 27 item 1: pytest-benchmark 5.2 parsed --benchmark-json with argparse.FileType('wb'), which
    # emptied the file while pytest read the command line, before the output check refused the path:
    # the finished results log was lost. Now the file is opened only when the document is written.
    pytester.makepyfile(test_x="def test_x(benchmark):\n    benchmark(lambda: None)\n")
    log = pytester.path / "r.jsonl"
    log.write_text('{"type": "session"}\n')
    refused = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--moeperf-results", str(log),
                                           "--benchmark-json", str(log))
    assert refused.ret == pytest.ExitCode.USAGE_ERROR, refused.stdout.str()
    assert log.read_text() == '{"type": "session"}\n'
    out = pytester.path / "run.json"
    written = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--moeperf-gate", "off",
                                           "--benchmark-json", str(out))
    assert written.ret == 0, written.stdout.str()
    assert [b["name"] for b in json.loads(out.read_text())["benchmarks"]] == ["test_x"]


def test_deferred_json_file_opens_only_when_written(tmp_path):
    path = tmp_path / "run.json"
    path.write_text("kept")
    target = bench_api.DeferredJsonFile(str(path))
    assert bench_api.json_option_path(target) == str(path) and path.read_text() == "kept"
    assert bench_api.write_json_option(type("C", (), {"getoption": lambda self, n, d=None: target})(), "{}") == str(path)
    assert path.read_text() == "{}"


def test_write_json_option_without_the_option_writes_nothing():
    class Config:
        def getoption(self, name, default=None):
            return None

    assert bench_api.write_json_option(Config(), "{}") is None


@pytest.mark.parametrize("pytest_v, bench_v, broken", [
    ("9.2.0", "5.2.3", True), ("9.3.1", "5.2.0", True), ("10.0.0", "5.1.0", True),
    ("9.1.1", "5.2.3", False), ("9.0.3", "5.2.3", False), ("8.4.2", "5.2.3", False),
    ("9.2.0", "5.3.1", False), ("9.2.0", "5.3.0", False), ("9.2.0rc1", "6.0.0", False),
])
def test_incompatible_versions_names_the_fix(pytest_v, bench_v, broken):
    why = bench_api.incompatible_versions(pytest_v, bench_v)
    assert (why is not None) == broken
    if broken:
        assert "pytest-benchmark>=5.3" in why and "\n" not in why


@pytest.mark.e2e
def test_installed_pair_runs_benchmarks_exactly_when_not_flagged(pytester):
    # ties the version check to the behaviour it predicts, on whatever pair is installed
    from importlib.metadata import version

    pytester.makepyfile(test_b="def test_b(benchmark):\n    benchmark.pedantic(lambda: None, rounds=1)\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    flagged = bench_api.incompatible_versions(pytest.__version__, version("pytest-benchmark"))
    assert (result.ret == 0) == (flagged is None), result.stdout.str()


@pytest.mark.e2e
def test_an_interrupted_benchmark_is_left_out_of_the_json(pytester):
    # A benchmark cut inside its only round (Ctrl-C in a serving point; SystemExit stands in for it:
    # a BaseException, not an Exception) has stats without data, and pytest-benchmark's end of
    # session would crash summarising it ("min() arg is an empty sequence") and lose --benchmark-json.
    # Fails loudly if pytest-benchmark stops reading the fixture's has_error flag.
    pytester.makepyfile(test_x="""
        from pytest_moeperf.results.outputs import drop_unfinished_fixture

        def test_done(benchmark):
            benchmark.pedantic(lambda: None, rounds=1, iterations=1)

        def test_cut(benchmark):
            def target():
                raise SystemExit("cut")
            try:
                benchmark.pedantic(target, rounds=1, iterations=1)
            except SystemExit:
                drop_unfinished_fixture(benchmark)
    """)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--moeperf-gate", "off",
                                          f"--benchmark-json={pytester.path / 'out.json'}")
    assert result.ret == 0, result.stdout.str()
    doc = json.loads((pytester.path / "out.json").read_text())
    assert [b["name"] for b in doc["benchmarks"]] == ["test_done"]
    assert "min() arg is an empty sequence" not in result.stdout.str() + result.stderr.str()


def test_defer_changes_a_5_2_declaration_with_the_installed_pytest(tmp_path):
    """pytest-benchmark 5.2 declares --benchmark-json as argparse.FileType('wb'); pytest 9.1 made an option's
    ``type`` a read-only view of its argparse action (the H200 image: AttributeError at start-up before)."""
    from _pytest.config.argparsing import Parser

    parser = Parser(_ispytest=True)
    parser.getgroup("benchmark").addoption("--benchmark-json", metavar="PATH", type=argparse.FileType("wb"))
    bench_api._defer(parser)
    path = tmp_path / "r.json"
    path.write_text("kept")
    parsed = parser.parse_known_args([f"--benchmark-json={path}"])
    assert isinstance(parsed.benchmark_json, bench_api.DeferredJsonFile)
    assert path.read_text() == "kept"
