"""Leave this package's own modules out of pytest's assertion rewriting.

pytest marks every top-level package of a distribution that provides a ``pytest11`` entry point for
assertion rewriting (``Config._mark_plugins_for_rewrite``). The package holds no test code whose
``assert`` messages need it, and the rewrite has a cost in every session of every project that has the
plugin installed: pytest parses and compiles each module from source, and where bytecode is not written
(PYTHONDONTWRITEBYTECODE=1, read-only site-packages) it does so again every session (~8 points of a
200-test suite's wall time here, docs/evidence/gate-cost-cpu-2026-12-02.md). The plugin module calls
:func:`leave_package_unrewritten` before it imports the rest of the package.

This reads pytest's private ``AssertionRewritingHook._must_rewrite`` and ``_marked_for_rewrite_cache``
(pytest 8.0-9.2, ``_pytest/assertion/rewrite.py``); where they are missing nothing changes, and
tests/test_plugin_cost.py fails if the package is rewritten again.
"""

from __future__ import annotations

import sys

PACKAGE = __name__.split(".", 1)[0]


def rewriting_hook():
    """pytest's assertion-rewriting import hook of this process, or None (``--assert=plain``, no pytest)."""
    return next((f for f in sys.meta_path if type(f).__name__ == "AssertionRewritingHook"), None)


def leave_package_unrewritten(hook=None) -> bool:
    """Unmark this package; True when it had been marked. Modules imported before the call stay as imported."""
    hook = rewriting_hook() if hook is None else hook
    marked = getattr(hook, "_must_rewrite", None)
    if not isinstance(marked, set) or PACKAGE not in marked:
        return False
    marked.discard(PACKAGE)
    cache = getattr(hook, "_marked_for_rewrite_cache", None)
    if isinstance(cache, dict):
        cache.clear()
    return True
