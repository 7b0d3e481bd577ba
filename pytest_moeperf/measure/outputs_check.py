"""What a case generated, and a reused static KV cache: the two per-round extras of the static backend.

* ``OutputRecord``: a digest of each measured round's generated token ids, the first sequence's
  ids, and whether every round generated the same (greedy runs should). The A/B command
  (pytest_moeperf/ab) compares them between sides: a speed-up that changes what the model
  generates is a regression no timing sees.
* ``first_step_logits``: the first decode step's logits of one unmeasured 2-token call, saved as
  ``.npy`` when the environment variable ``MOEPERF_LOGITS_DIR`` names a folder (the A/B command
  sets it per run), so two sides running the same weights can be compared to the last bit.
* ``ReusedStaticCache`` (``--moeperf-static-cache reuse``): one ``StaticCache`` made once per case
  and reset in place before each round, instead of the new cache transformers' ``generate(...,
  cache_implementation="static")`` allocates every call. The compiled decode step's CUDA graph
  then sees the same KV addresses every round (``StaticCache`` marks them static), so nothing is
  re-recorded or copied when the allocator hands out other addresses. What a round times then
  leaves out the cache's allocation, as a server that keeps its cache does.

transformers renamed ``generate(past_key_values=)`` to ``cache=`` (5.24 warns that the old name goes
in 6.0; 5.17 knows only the old one): ``cache_kwarg`` picks by the model's forward signature.
"""

from __future__ import annotations

import hashlib
import inspect
import os
from dataclasses import dataclass, field
from pathlib import Path

LOGITS_DIR_ENV = "MOEPERF_LOGITS_DIR"
STATIC_CACHE_MODES = ("fresh", "reuse")
DEFAULT_STATIC_CACHE = "fresh"


def token_digest(rows) -> str:
    """sha256 (first 16 hex digits) of generated token ids, rows of ints; the same ids give the same digest."""
    h = hashlib.sha256()
    for row in rows:
        h.update(b"|" + ",".join(str(int(t)) for t in row).encode())
    return h.hexdigest()[:16]


@dataclass
class OutputRecord:
    digests: list = field(default_factory=list)
    first_tokens: list | None = None

    def add(self, rows) -> None:
        rows = [list(map(int, r)) for r in rows]
        self.digests.append(token_digest(rows))
        if self.first_tokens is None:
            self.first_tokens = rows[0] if rows else []

    def summary(self) -> dict | None:
        if not self.digests:
            return None
        return {"digest": self.digests[0], "tokens": self.first_tokens,
                "rounds_agree": len(set(self.digests)) == 1, "distinct_digests": len(set(self.digests))}


def first_difference(a: list | None, b: list | None) -> int | None:
    """Index of the first token where two generations differ (None: the same, or unknown)."""
    if a is None or b is None:
        return None
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def cache_kwarg(model) -> str:
    """The name generate() and forward() take the cache under: ``cache`` (transformers >= 5.2x) or
    ``past_key_values``; a forward's output names its cache field the same way.

    generate() takes ``**kwargs`` in both releases, so its own signature cannot tell: the model's forward
    names the cache in its signature (5.17: ``past_key_values``; 5.24: ``cache``, the old name deprecated)."""
    try:
        params = inspect.signature(type(model).forward).parameters
    except (TypeError, ValueError, AttributeError):
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


class ReusedStaticCache:
    """One StaticCache for a case's every round, reset in place (zeroed, same addresses) before each."""

    def __init__(self, model, max_cache_len: int):
        from transformers import StaticCache

        self.cache = StaticCache(config=model.config.get_text_config(decoder=True), max_cache_len=max_cache_len)
        self.kwarg = cache_kwarg(model)

    def kwargs(self) -> dict:
        """generate() kwargs for the next call: the same cache, emptied (layers not yet used stay lazy)."""
        self.cache.reset()
        return {self.kwarg: self.cache}


def logits_path(case_id: str) -> Path | None:
    folder = os.environ.get(LOGITS_DIR_ENV)
    if not folder:
        return None
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in case_id)
    return Path(folder) / f"{safe}.npy"


def save_first_step_logits(out, path: Path) -> None:
    """out: generate's output with ``output_logits=True`` and >= 2 new tokens; writes the first decode
    step's logits of the first sequence (float32)."""
    import numpy as np

    logits = out.logits[1][0].float().cpu().numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, logits)
    os.replace(tmp, path)
