"""The pytest glue: the plugin, its options and hooks, the pytest-benchmark bridge."""
