"""A throwaway slowdown for validating the gate (not part of the product).

``SLOWDOWN_MS=3.5 python -m pytest benchmarks/ -p tools.slowdown_plugin ...`` sleeps that
long before every decode step (a forward over one new token), as a real regression in the
decode path would.
"""

import os
import time

import pytest_moeperf.loading as loading

_DELAY_S = float(os.environ.get("SLOWDOWN_MS", "0")) / 1000.0
_original = loading.load_model


def _slow_load_model(*args, **kwargs):
    loaded = _original(*args, **kwargs)

    def before_forward(module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None and ids.shape[-1] == 1:
            time.sleep(_DELAY_S)

    loaded.model.register_forward_pre_hook(before_forward, with_kwargs=True)
    return loaded


loading.load_model = _slow_load_model
