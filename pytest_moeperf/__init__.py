"""pytest-moeperf: deployment benchmarks of MoE and dense LLMs as pytest benchmarks.

Importing this package must stay cheap: torch, transformers and pynvml are imported
lazily by the modules that measure, never by the plugin at load time.
"""

__version__ = "0.1.0"
