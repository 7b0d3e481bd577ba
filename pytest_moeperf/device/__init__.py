"""The device: the GPU interface with NoGpu (gpu.py), NVML identity and counters (nvml.py), every energy
instrument (energy.py) and the clocks beside the rounds (gpu_state.py). Imports neither torch nor pynvml."""
