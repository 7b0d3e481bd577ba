"""Metric definitions (the registry), derived figures and the statistics they use; no torch."""
