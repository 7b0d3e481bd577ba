"""A throwaway slowdown for validating the gate (not part of the product).

``SLOWDOWN_MS=4 python -m pytest benchmarks/ -p tools.slowdown_plugin ...`` sleeps that long
in every decode step after the first token, as a real regression in the decode path would.
The sleep sits in a logits processor, outside any compiled region, after a device sync, so
it slows the eager and the static (torch.compile + CUDA graphs) backends alike.
"""

import os
import time

import pytest_moeperf.loading as loading

_DELAY_S = float(os.environ.get("SLOWDOWN_MS", "0")) / 1000.0
# SLOWDOWN_SYNC=0: sleep without the device sync (the sync alone stops the host running ahead
# of the GPU and cost ~1.7 ms per token on the static backend; synced 1 ms gave +25-34% TPOT)
_SYNC = os.environ.get("SLOWDOWN_SYNC", "1") != "0"
_original = loading.load_model


class _SleepAfterFirstToken:
    def __init__(self):
        self.calls = 0

    def __call__(self, input_ids, scores):
        self.calls += 1
        if self.calls > 1:
            # wait for the step's GPU work first: a host sleep that overlaps queued kernels
            # hides inside them (on the H200 a 1 ms sleep gave +1.4% TPOT on the static backend)
            if _SYNC and scores.is_cuda:
                import torch

                torch.cuda.synchronize()
            time.sleep(_DELAY_S)
        return scores


def _slow_load_model(*args, **kwargs):
    from transformers import LogitsProcessorList

    loaded = _original(*args, **kwargs)
    generate = loaded.model.generate

    def slow_generate(*a, **k):
        processors = LogitsProcessorList(k.pop("logits_processor", None) or [])
        processors.append(_SleepAfterFirstToken())
        return generate(*a, logits_processor=processors, **k)

    loaded.model.generate = slow_generate
    return loaded


loading.load_model = _slow_load_model
