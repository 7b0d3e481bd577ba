"""The two sides of an A/B job from the command line: git refs in worktrees of their own, or option sets.

``--a``/``--b`` name a git ref (a branch, tag or commit) or ``WORKTREE`` (the working tree as it is, with
uncommitted changes). Defaults: A = the merge base of HEAD with main (origin/main, master), B = the
working tree, so a pull request is judged against the main it branched from, measured minutes earlier
on the same board. Each ref is checked out detached under ``OUT/worktrees/`` and removed afterwards.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path

from pytest_moeperf.ab.runner import AbError, Side

WORKTREE = "WORKTREE"
MAIN_CANDIDATES = ("main", "origin/main", "master", "origin/master")


def _git(cwd: Path, *args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    except FileNotFoundError:
        raise AbError("git is not installed: an A/B job of two refs needs it (or compare option sets with "
                      "--a WORKTREE --b WORKTREE)") from None
    except subprocess.CalledProcessError as exc:
        msg = (exc.stderr or exc.stdout or "").strip().splitlines()
        raise AbError(f"git {' '.join(args)}: {msg[-1] if msg else f'exit {exc.returncode}'}") from None
    return out.stdout.strip()


def repo_top(cwd: Path) -> Path:
    return Path(_git(cwd, "rev-parse", "--show-toplevel"))


def default_base(top: Path) -> str:
    for name in MAIN_CANDIDATES:
        try:
            _git(top, "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}")
        except AbError:
            continue
        return _git(top, "merge-base", "HEAD", name)
    raise AbError("--a: no main branch to take the merge base with; name the base, e.g. --a origin/main")


def parse_env(items: Sequence[str], flag: str) -> dict[str, str]:
    env = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag}: {item!r} is not NAME=VALUE; e.g. {flag} SLOWDOWN_GPU_MS=1")
        env[key] = value
    return env


def make_side(label: str, ref: str | None, top: Path, out_dir: Path, python: str, args: str,
              env: Sequence[str]) -> Side:
    """A side: for a ref, a detached worktree under out_dir/worktrees (made here)."""
    flag = f"--{label.lower()}"
    extra = tuple(shlex.split(args or ""))
    side_env = parse_env(env, f"{flag}-env")
    if ref is None or ref == WORKTREE:
        return Side(label, top, None, None, python, extra, side_env)
    sha = _git(top, "rev-parse", "--verify", f"{ref}^{{commit}}")
    where = out_dir / "worktrees" / f"{label}-{sha[:12]}"
    _git(top, "worktree", "add", "--detach", "--force", str(where), sha)
    return Side(label, where, ref, sha, python, extra, side_env)


def remove_worktrees(top: Path, sides: Sequence[Side]) -> None:
    for side in sides:
        if side.ref is not None:
            try:
                _git(top, "worktree", "remove", "--force", str(side.cwd))
            except AbError:
                pass
