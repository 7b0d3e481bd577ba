"""The plugin costs nothing where it is not used (issue 29 item 2): a pytest session of another
project's tests, with the plugin installed and a benchmark storage full of runs, imports no numpy
and no gate and reads no stored run; the gate starts only for a moeperf option or benchmark."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pytest_moeperf.plugin import assert_rewrite

pytestmark = pytest.mark.e2e  # every test here runs pytest in a subprocess

ROOT = Path(__file__).resolve().parents[1]

# what pytest itself imports (and so rewrites) before the plugin module's first line unmarks the package
PYTEST_IMPORTS_ITSELF = {"pytest_moeperf", "pytest_moeperf.plugin", "pytest_moeperf.plugin.plugin",
                         "pytest_moeperf.plugin.assert_rewrite", "pytest_moeperf.parallel.xdist_plugin",
                         "pytest_moeperf.serving.plugin", "pytest_moeperf.parallel", "pytest_moeperf.serving"}

# written by the plain suite's conftest at the end of the session
PROBE = textwrap.dedent("""
    import json, os, sys

    def pytest_sessionfinish(session):
        mods = [m for m in ("numpy", "scipy", "torch", "pytest_moeperf.gate.baseline", "pytest_moeperf.gate.gate_run",
                            "pytest_moeperf.gate.decision",
                            # what only a serving point or xdist workers need (the engine brought asyncio in)
                            "pytest_moeperf.serving.engine", "pytest_moeperf.serving.loadgen",
                            "pytest_moeperf.serving.backend", "pytest_moeperf.parallel.xdist_run",
                            "pytest_moeperf.parallel.assign") if m in sys.modules]
        rewritten = sorted(m for m, mod in list(sys.modules.items()) if m.startswith("pytest_moeperf")
                           and type(getattr(getattr(mod, "__spec__", None), "loader", None)).__name__
                           == "AssertionRewritingHook")
        with open(os.environ["MOEPERF_PROBE"], "w") as f:
            json.dump({"loaded": mods, "plugin": "pytest_moeperf.plugin.plugin" in sys.modules,
                       "package_modules": sum(m.startswith("pytest_moeperf") for m in sys.modules),
                       "rewritten": rewritten}, f)
""")


def _stored_run(i: int) -> dict:
    bench = {"name": f"test_b{i}", "fullname": f"test_b.py::test_b{i}", "extra_info": {"samples": {"tpot_ms": [1.0] * 50}},
             "stats": {"min": 1.0, "max": 1.0, "mean": 1.0, "median": 1.0, "rounds": 50, "data": [1.0] * 50}}
    return {"machine_info": {"node": "x"}, "commit_info": {}, "benchmarks": [bench], "version": "5.3.1"}


@pytest.fixture(scope="module")
def plain_project(tmp_path_factory) -> Path:
    """Another project: two plain tests, and a .benchmarks storage of 200 runs, the newest not JSON
    (any read of the storage by the gate ends the session with a usage error)."""
    d = tmp_path_factory.mktemp("plain")
    (d / "test_plain.py").write_text("def test_one():\n    assert 1\n\ndef test_two():\n    assert 2\n")
    (d / "conftest.py").write_text(PROBE)
    store = d / ".benchmarks" / "Linux-CPython-3.11-64bit"
    store.mkdir(parents=True)
    for i in range(200):
        (store / f"{i + 1:04d}_run.json").write_text(json.dumps(_stored_run(i)))
    (store / "9999_torn.json").write_text('{"benchmarks": [')
    return d


def _pytest(project: Path, *args: str, env_extra: dict | None = None) -> tuple[subprocess.CompletedProcess, dict]:
    probe = project / "probe.json"
    probe.unlink(missing_ok=True)
    env = {**os.environ, "PYTEST_ADDOPTS": "", "MOEPERF_PROBE": str(probe), **(env_extra or {})}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=project,
                          capture_output=True, text=True, timeout=300, env=env)
    return proc, (json.loads(probe.read_text()) if probe.exists() else {})


def test_a_plain_suite_imports_no_numpy_and_reads_no_stored_run(plain_project):
    proc, probe = _pytest(plain_project, "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert probe["plugin"], probe  # the plugin was loaded (entry point) ...
    assert probe["loaded"] == [], probe  # ... and nothing of the gate, numpy, scipy, serving or xdist came with it
    assert "moeperf gate" not in proc.stdout


def test_a_wheel_install_rewrites_only_what_pytest_imports_itself(plain_project, tmp_path):
    """A wheel's RECORD lists the package's files, so pytest marks the whole package for assertion rewriting
    (an editable install, as here, lists none). A dist-info on PYTHONPATH with such a RECORD and a pytest11
    entry point makes pytest mark it as for a wheel; the plugin then unmarks it before its other imports."""
    info = tmp_path / "site" / "pytest_moeperf_wheel-0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pytest-moeperf-wheel\nVersion: 0\n")
    (info / "RECORD").write_text("pytest_moeperf/__init__.py,,\npytest_moeperf/plugin/plugin.py,,\n")
    (info / "entry_points.txt").write_text("[pytest11]\nmoeperf = pytest_moeperf.plugin.plugin\n")
    proc, probe = _pytest(plain_project, "-q", env_extra={"PYTHONPATH": str(tmp_path / "site")})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # pytest rewrote the plugin module (proof that the package was marked), and nothing the
    # plugin imports after its first line: the options' and hooks' modules load compiled
    assert "pytest_moeperf.plugin.plugin" in probe["rewritten"], probe["rewritten"]
    assert set(probe["rewritten"]) <= PYTEST_IMPORTS_ITSELF, probe["rewritten"]
    assert probe["package_modules"] > len(PYTEST_IMPORTS_ITSELF) + 10, probe


def test_leave_package_unrewritten_unmarks_only_this_package():
    class AssertionRewritingHook:  # pytest's attributes, as _pytest/assertion/rewrite.py has them
        _must_rewrite = {"pytest_moeperf", "other_plugin"}
        _marked_for_rewrite_cache = {"pytest_moeperf.gate": True}

    hook = AssertionRewritingHook()
    assert assert_rewrite.leave_package_unrewritten(hook)
    assert hook._must_rewrite == {"other_plugin"} and hook._marked_for_rewrite_cache == {}
    assert not assert_rewrite.leave_package_unrewritten(hook)  # already unmarked
    assert not assert_rewrite.leave_package_unrewritten(object())  # a hook without them: nothing happens


def test_a_moeperf_option_starts_the_gate_which_reads_the_storage(plain_project):
    # the same session given a moeperf option: the gate starts and reads the storage, whose torn
    # newest run it refuses (the probe above would see that read)
    proc, _ = _pytest(plain_project, "-q", "--moeperf-gate-strict")
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, proc.stdout + proc.stderr
    assert "9999_torn.json" in proc.stderr and "not JSON" in proc.stderr


def test_collecting_a_moeperf_benchmark_starts_the_gate(plain_project, tmp_path):
    project = tmp_path / "p"
    project.mkdir()
    (project / "conftest.py").write_text(PROBE)
    (project / ".benchmarks").symlink_to(plain_project / ".benchmarks")
    bench = (ROOT / "benchmarks" / "test_deployment.py").read_text(encoding="utf-8")
    (project / "test_deployment.py").write_text(bench, encoding="utf-8")
    proc, _ = _pytest(project, "-q", "--co")
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, proc.stdout + proc.stderr
    assert "9999_torn.json" in proc.stderr
