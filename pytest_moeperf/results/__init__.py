"""Where measurements go: the crash-safe results log, the JSON documents, output files, the summary."""
