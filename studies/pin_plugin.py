"""A throwaway host-thread setting for the drift study (not part of the product).

``PIN_CPUS=2,3 python -m pytest benchmarks/ -p studies.pin_plugin ...`` binds the process (and every
thread and compile worker it starts later) to those cores and gives torch as many intra-op threads,
so the host side of each decode step runs on the same cores in every run instead of wherever the
scheduler puts it: the "host threads" factor of issue 21's item 3.
"""

import os

_CPUS = {int(c) for c in os.environ.get("PIN_CPUS", "").split(",") if c.strip().isdigit()}


def pytest_configure(config):
    if not _CPUS:
        return
    os.sched_setaffinity(0, _CPUS)  # inherited by threads and processes started from here on
    os.environ["OMP_NUM_THREADS"] = str(len(_CPUS))
    import torch

    torch.set_num_threads(len(_CPUS))
