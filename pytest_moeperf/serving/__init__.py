"""Deployment under load: a load generator, workloads, per-request records and serving backends.

Pure Python at import time (no torch, no pytest): the in-process continuous-batching engine and
the OpenAI-compatible HTTP client are backends behind one small interface (backend.py).
"""
