"""Every end-to-end test carries ``@pytest.mark.e2e``, so ``pytest tests/ -m "not e2e"`` is the fast
inner loop and never silently runs a subprocess. A test is end to end when it (or a helper or fixture
of its file it uses, transitively) takes ``pytester``/``transformers_server`` or names
``subprocess``, ``Popen``, ``sys.executable``, a ``runpytest*`` or the serve starter."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
E2E_FIXTURES = {"pytester", "testdir", "transformers_server"}
E2E_NAMES = {"subprocess", "Popen", "executable", "runpytest", "runpytest_subprocess", "runpytest_inprocess",
             "inline_run", "start_transformers_serve"}


def _names(fn: ast.AST) -> set[str]:
    found = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.Attribute):
            found.add(node.attr)
        elif isinstance(node, ast.arg):
            found.add(node.arg)
    return found


def _functions(tree: ast.Module) -> dict[str, ast.FunctionDef]:
    found = {}
    for node in tree.body:
        members = node.body if isinstance(node, ast.ClassDef) else [node]
        for fn in members:
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found[fn.name] = fn
    return found


def _end_to_end(functions: dict[str, ast.FunctionDef]) -> set[str]:
    """The functions that reach a subprocess, pytester or a served model, transitively in the file."""
    e2e: set[str] = set()
    while True:
        new = {name for name, fn in functions.items()
               if name not in e2e and _names(fn) & (E2E_FIXTURES | E2E_NAMES | e2e)}
        if not new:
            return e2e
        e2e |= new


def _marked(fn: ast.FunctionDef) -> bool:
    return any(ast.unparse(d).startswith("pytest.mark.e2e") for d in fn.decorator_list)


def _module_marked(tree: ast.Module) -> bool:
    return any(isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "pytestmark" for t in n.targets)
               and "pytest.mark.e2e" in ast.unparse(n.value) for n in tree.body)


def unmarked_end_to_end(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    if _module_marked(tree):
        return []
    functions = _functions(tree)
    return sorted(name for name in _end_to_end(functions)
                  if name.startswith("test_") and not _marked(functions[name]))


@pytest.mark.parametrize("path", sorted(TESTS.glob("test_*.py")), ids=lambda p: p.name)
def test_every_end_to_end_test_is_marked(path):
    assert unmarked_end_to_end(path) == [], f"add @pytest.mark.e2e to these tests in {path.name}"


def test_the_check_finds_a_helper_that_runs_a_subprocess(tmp_path):
    sample = tmp_path / "test_sample.py"
    sample.write_text("import subprocess\n\ndef _run():\n    return subprocess.run(['true'])\n\n"
                      "def _twice():\n    _run(); _run()\n\n"
                      "def test_a():\n    _twice()\n\n"
                      "@pytest.mark.e2e\ndef test_b():\n    _run()\n\n"
                      "def test_c(pytester):\n    pass\n\n"
                      "def test_d(tmp_path):\n    assert tmp_path\n")
    assert unmarked_end_to_end(sample) == ["test_a", "test_c"]
    sample.write_text("pytestmark = pytest.mark.e2e\n" + sample.read_text())
    assert unmarked_end_to_end(sample) == []
