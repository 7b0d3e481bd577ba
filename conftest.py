# The plugin is registered through the pytest11 entry point when the package is installed;
# this makes a plain checkout work too (python -m pytest benchmarks/ from the repo root).
import importlib.util

if importlib.util.find_spec("pytest_moeperf") is not None:
    import sys

    if "pytest_moeperf.plugin.plugin" not in sys.modules:
        pytest_plugins = ["pytest_moeperf.plugin.plugin"]
