"""The markdown/HTML report with the paper's tables and plots."""
