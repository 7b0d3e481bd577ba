"""pytest-benchmark through its public hooks, and the one private access (bench_api.benchmark_storage)."""

from __future__ import annotations

import json

import pytest

from pytest_moeperf.plugin import bench_api


def test_private_storage_access_still_finds_pytest_benchmarks_storage(pytestconfig, tmp_path):
    # Fails loudly if pytest-benchmark renames its session attribute or the storage on it: the
    # in-pytest gate (--benchmark-compare) and the xdist merge (--benchmark-save) read it here.
    storage = bench_api.benchmark_storage(pytestconfig)
    assert storage is not None, "pytest-benchmark no longer keeps its session at config._benchmarksession.storage"
    for method in ("save", "load"):
        assert callable(getattr(storage, method, None)), f"pytest-benchmark's storage has no {method}()"


def test_storage_saves_and_loads_a_document_built_by_the_public_hooks(pytester):
    # A real pytest-benchmark session: the document comes from its own hooks, the storage from
    # the private access, and the file it saves loads back as the same benchmarks.
    pytester.makeconftest("""
        import json, pytest
        from pytest_moeperf.plugin import bench_api

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


def test_installed_pair_runs_benchmarks_exactly_when_not_flagged(pytester):
    # ties the version check to the behaviour it predicts, on whatever pair is installed
    from importlib.metadata import version

    pytester.makepyfile(test_b="def test_b(benchmark):\n    benchmark.pedantic(lambda: None, rounds=1)\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    flagged = bench_api.incompatible_versions(pytest.__version__, version("pytest-benchmark"))
    assert (result.ret == 0) == (flagged is None), result.stdout.str()
