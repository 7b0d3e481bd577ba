"""The GPU as the suite uses it, behind one small interface: who it is, its energy counter and power,
its clock health, what else runs on it. ``energy.NvmlDevice`` implements it over NVML; ``NoGpu`` is
the machine without one (the CPU). Tests hand CaseRunner a fake ``Gpu`` rather than a fake pynvml.

Which board is measured is worked out here once: the GPU torch calls cuda:0, by its UUID
(``cuda0_device``), NVML's list of boards for assigning xdist workers (``list_gpus``) and the
identity pytest-benchmark's machine_info records (``identity_or_none``). Importing this module
imports neither torch nor pynvml.
"""

from __future__ import annotations

from typing import Protocol


class Gpu(Protocol):
    def identity(self) -> dict: ...  # name, uuid, memory, driver, clocks, power limit, ...
    def energy_mj(self) -> int: ...  # the total-energy counter (raises EnergyUnavailable)
    def power_instant_w(self) -> float: ...
    def clock_event_reasons(self) -> int: ...
    def throttle_mask(self) -> int: ...  # the clock-event bits that mean a slowed GPU
    def violation_ns(self) -> dict[str, int]: ...  # cumulative power/thermal violation time
    def other_processes(self, own_pids: set[int] | None = None) -> list[dict]: ...
    def clock_state(self) -> dict: ...  # sm_clock_mhz, mem_clock_mhz, temperature_c now (gpu_state.py)


class NoGpu:
    """No GPU (the CPU, or NVML unusable): an identity without a board and no counters."""

    def __init__(self, reason: str = "no GPU: device is the CPU (NVML energy applies to NVIDIA GPUs)"):
        self.reason = reason

    def identity(self) -> dict:
        return {"name": None, "uuid": None}

    def energy_mj(self) -> int:
        from pytest_moeperf.device.nvml import EnergyUnavailable

        raise EnergyUnavailable(self.reason)

    def power_instant_w(self) -> float:
        return self.energy_mj()

    def clock_event_reasons(self) -> int:
        return 0

    def throttle_mask(self) -> int:
        return 0

    def violation_ns(self) -> dict[str, int]:
        return {}

    def other_processes(self, own_pids: set[int] | None = None) -> list[dict]:
        return []

    def clock_state(self) -> dict:
        return {}


def normalize_uuid(u) -> str:
    """``GPU-ABC`` / ``abc`` -> ``abc``: NVML and torch spell the same board's UUID differently."""
    return str(u or "").lower().removeprefix("gpu-")


def torch_cuda0_uuid() -> str | None:
    """NVML UUID of the GPU torch calls cuda:0, so energy, clocks and processes are read from the
    board being measured whatever CUDA_VISIBLE_DEVICES holds (an index, a UUID, a MIG id)."""
    try:
        import torch

        uuid = str(torch.cuda.get_device_properties(0).uuid)
    except Exception:
        return None
    return uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"


def cuda0_device():
    """The NvmlDevice of torch's cuda:0 (raises EnergyUnavailable/GpuQueryError where NVML fails)."""
    from pytest_moeperf.device.nvml import GpuQueryError, NvmlDevice

    uuid = torch_cuda0_uuid()
    if uuid:
        try:
            return NvmlDevice(uuid=uuid)
        except GpuQueryError:  # a MIG slice or an id NVML does not take: the visible index
            pass
    return NvmlDevice()


def identity_or_none() -> dict | None:
    """NVML's identity of the visible GPU, without importing torch; None where NVML fails."""
    from pytest_moeperf.device.nvml import EnergyUnavailable, GpuQueryError, NvmlDevice

    try:
        return NvmlDevice().identity()
    except (EnergyUnavailable, GpuQueryError):
        return None


def list_gpus() -> list[dict] | None:
    """Every board NVML sees: index, uuid, name (None where NVML fails)."""
    from pytest_moeperf.device.nvml import _nvml

    try:
        n = _nvml()
        out = []
        for i in range(int(n.nvmlDeviceGetCount())):
            h = n.nvmlDeviceGetHandleByIndex(i)
            uuid, name = n.nvmlDeviceGetUUID(h), n.nvmlDeviceGetName(h)
            out.append({"index": i, "uuid": uuid.decode() if isinstance(uuid, bytes) else uuid,
                        "name": name.decode() if isinstance(name, bytes) else name})
        return out
    except Exception:
        return None
