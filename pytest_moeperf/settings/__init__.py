"""Settings shared by every layer: the option parsers (parsers.py)."""
