"""A throwaway slowdown for validating the gate (not part of the product).

``SLOWDOWN_GPU_MS=1 python -m pytest benchmarks/ -p studies.slowdown_plugin ...`` adds that much
GPU work to every decode step after the first token, as a real regression in the decode path
would (a slower kernel): a spin kernel (``torch.cuda._sleep``) queued on the model's stream from a
logits processor, with no host sync, so the host still runs ahead as it does unslowed. The static
backend's decode is GPU-bound (an unsynced 1 ms host sleep cost it only +1.4%), so 1 ms of GPU
work is ~+10% TPOT at its ~10 ms/token.

Host-side variants, kept for the record of what was tried on the H200:
``SLOWDOWN_MS=4`` sleeps on the host after a device sync (``SLOWDOWN_SYNC=0``: without it). The
sync alone stops the host running ahead of the GPU: synced 1 ms gave +25-34% TPOT on the static
backend, unsynced 1 ms +1.4% (the sleep hides under the queued kernels).
"""

import os
import time

import pytest_moeperf.model.loading as loading

_DELAY_S = float(os.environ.get("SLOWDOWN_MS", "0")) / 1000.0
_GPU_MS = float(os.environ.get("SLOWDOWN_GPU_MS", "0"))
_SYNC = os.environ.get("SLOWDOWN_SYNC", "1") != "0"
_original = loading.load_model


def _spin_cycles(ms: float) -> int:
    """Clock cycles for ``ms`` of spinning at the GPU's maximum SM clock (NVML), 1980 MHz if unknown."""
    mhz = 1980
    try:
        import pynvml

        pynvml.nvmlInit()
        mhz = pynvml.nvmlDeviceGetMaxClockInfo(pynvml.nvmlDeviceGetHandleByIndex(0), pynvml.NVML_CLOCK_SM)
    except Exception:
        pass
    return int(ms * mhz * 1000)


class _SlowAfterFirstToken:
    def __init__(self):
        self.calls = 0
        self.cycles = _spin_cycles(_GPU_MS) if _GPU_MS else 0

    def __call__(self, input_ids, scores):
        self.calls += 1
        if self.calls > 1:
            if self.cycles and scores.is_cuda:
                import torch

                torch.cuda._sleep(self.cycles)
            if _DELAY_S:
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
        processors.append(_SlowAfterFirstToken())
        return generate(*a, logits_processor=processors, **k)

    loaded.model.generate = slow_generate
    return loaded


loading.load_model = _slow_load_model
