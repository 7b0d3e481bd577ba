"""Measuring one case: token clock and rounds, energy, memory, GPU identity, roofline; works without pytest."""
