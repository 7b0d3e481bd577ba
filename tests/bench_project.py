"""The suite's own benchmark modules copied into a scratch project, as the end-to-end tests run them."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def copy_benchmark(project: Path, name: str = "test_deployment.py") -> Path:
    """``project/benchmarks/<name>``, copied from the repository's benchmarks/; returns that folder."""
    folder = project / "benchmarks"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text((ROOT / "benchmarks" / name).read_text(encoding="utf-8"), encoding="utf-8")
    return folder
