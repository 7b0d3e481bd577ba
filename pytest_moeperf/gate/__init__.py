"""The regression gate: comparing a run against a baseline and rendering the verdicts."""
