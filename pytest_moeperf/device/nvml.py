"""One GPU through NVML (after Zeus's device/gpu): its energy counter, power, clocks, processes and
identity, as ``NvmlDevice``, which implements device/gpu.py's ``Gpu`` interface.

NVML errors become our own exceptions; the pynvml module is imported only here, lazily.
"""

from __future__ import annotations

import os


class EnergyUnavailable(RuntimeError):
    """Energy cannot be measured on this device; the message is the reason recorded."""


class GpuQueryError(RuntimeError):
    """An NVML query failed; the message names the query and NVML's error."""


def _nvml():
    try:
        import pynvml
    except ImportError as exc:  # nvidia-ml-py not installed
        raise EnergyUnavailable(f"pynvml not importable ({exc}); pip install nvidia-ml-py") from None
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        raise EnergyUnavailable(f"NVML init failed: {exc}") from None
    return pynvml


def _call(pynvml, what: str, fn, *args):
    try:
        return fn(*args)
    except Exception as exc:
        raise GpuQueryError(f"NVML {what} failed: {exc}") from None


def visible_nvml_index() -> int:
    """NVML index of the device torch calls cuda:0 (NVML ignores CUDA_VISIBLE_DEVICES)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    return int(visible) if visible.isdigit() else 0


class NvmlDevice:
    """One GPU as NVML sees it: energy counter, power, clocks, processes, identity."""

    def __init__(self, index: int | None = None, uuid: str | None = None):
        self.nvml = _nvml()
        n = self.nvml
        if uuid:
            self.handle = _call(n, "nvmlDeviceGetHandleByUUID", n.nvmlDeviceGetHandleByUUID, uuid)
        else:
            idx = visible_nvml_index() if index is None else index
            self.handle = _call(n, "nvmlDeviceGetHandleByIndex", n.nvmlDeviceGetHandleByIndex, idx)

    # --- energy -------------------------------------------------------------------------
    def energy_mj(self) -> int:
        n = self.nvml
        try:
            return int(n.nvmlDeviceGetTotalEnergyConsumption(self.handle))
        except Exception as exc:
            raise EnergyUnavailable(f"NVML total-energy counter unavailable: {exc}") from None

    def power_instant_w(self) -> float:
        """Instant board power (field NVML_FI_DEV_POWER_INSTANT), falling back to GetPowerUsage."""
        n = self.nvml
        fid = getattr(n, "NVML_FI_DEV_POWER_INSTANT", None)
        if fid is not None:
            try:
                values = n.nvmlDeviceGetFieldValues(self.handle, [fid])
                v = values[0]
                if v.nvmlReturn == 0:
                    return float(v.value.uiVal) / 1000.0
            except Exception:
                pass
        return float(_call(n, "nvmlDeviceGetPowerUsage", n.nvmlDeviceGetPowerUsage, self.handle)) / 1000.0

    # --- health ---------------------------------------------------------------------------
    def throttle_mask(self) -> int:
        return throttle_mask(self.nvml)

    def clock_event_reasons(self) -> int:
        n = self.nvml
        fn = getattr(n, "nvmlDeviceGetCurrentClocksEventReasons", None) or n.nvmlDeviceGetCurrentClocksThrottleReasons
        return int(_call(n, "clock event reasons", fn, self.handle))

    def violation_ns(self) -> dict[str, int]:
        """Cumulative time (ns) the GPU spent held back by power and thermal policy."""
        n = self.nvml
        out = {}
        for name, policy in (("power", n.NVML_PERF_POLICY_POWER), ("thermal", n.NVML_PERF_POLICY_THERMAL)):
            try:
                out[name] = int(n.nvmlDeviceGetViolationStatus(self.handle, policy).violationTime)
            except Exception:
                out[name] = 0
        return out

    def other_processes(self, own_pids: set[int] | None = None) -> list[dict]:
        """Compute and graphics processes on this GPU other than ours."""
        n = self.nvml
        own = own_pids or {os.getpid()}
        procs = []
        for fn_name in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
            fn = getattr(n, fn_name, None)
            if fn is None:
                continue
            try:
                for p in fn(self.handle):
                    if p.pid not in own:
                        used = getattr(p, "usedGpuMemory", None)
                        procs.append({"pid": int(p.pid), "used_memory_bytes": int(used) if used else None})
            except Exception:
                continue
        return procs

    def clock_state(self) -> dict:
        """The SM and memory clocks (MHz) and the temperature (C) now; one read each."""
        n, h = self.nvml, self.handle
        return {"sm_clock_mhz": _call(n, "SM clock", n.nvmlDeviceGetClockInfo, h, n.NVML_CLOCK_SM),
                "mem_clock_mhz": _call(n, "memory clock", n.nvmlDeviceGetClockInfo, h, n.NVML_CLOCK_MEM),
                "temperature_c": _call(n, "temperature", n.nvmlDeviceGetTemperature, h, n.NVML_TEMPERATURE_GPU)}

    def identity(self) -> dict:
        n = self.nvml
        h = self.handle

        def opt(fn, *args, scale=1.0):
            try:
                v = fn(*args)
                v = v.decode() if isinstance(v, bytes) else v
                return v / scale if scale != 1.0 else v
            except Exception:
                return None

        mem = opt(n.nvmlDeviceGetMemoryInfo, h)
        return {
            "name": opt(n.nvmlDeviceGetName, h),
            "uuid": opt(n.nvmlDeviceGetUUID, h),
            "memory_total_bytes": int(mem.total) if mem is not None else None,
            "driver": opt(n.nvmlSystemGetDriverVersion),
            "cuda_driver_version": opt(n.nvmlSystemGetCudaDriverVersion_v2),
            "power_limit_w": opt(n.nvmlDeviceGetEnforcedPowerLimit, h, scale=1000.0),
            "sm_clock_mhz": opt(n.nvmlDeviceGetClockInfo, h, n.NVML_CLOCK_SM),
            "mem_clock_mhz": opt(n.nvmlDeviceGetClockInfo, h, n.NVML_CLOCK_MEM),
            "sm_clock_max_mhz": opt(n.nvmlDeviceGetMaxClockInfo, h, n.NVML_CLOCK_SM),
            "temperature_c": opt(n.nvmlDeviceGetTemperature, h, n.NVML_TEMPERATURE_GPU),
            "persistence_mode": opt(n.nvmlDeviceGetPersistenceMode, h),
        }


# Clock-event bits that mean the GPU ran slower than it would have: thermal, hardware
# slowdown, power brake. The software power cap is recorded apart (a decode at batch 1
# rarely meets it, and when it does the figure is still the GPU's real behaviour).
def throttle_mask(pynvml) -> int:
    names = ("nvmlClocksEventReasonSwThermalSlowdown", "nvmlClocksEventReasonHwThermalSlowdown",
             "nvmlClocksEventReasonHwSlowdown", "nvmlClocksEventReasonHwPowerBrakeSlowdown",
             "nvmlClocksThrottleReasonSwThermalSlowdown", "nvmlClocksThrottleReasonHwThermalSlowdown",
             "nvmlClocksThrottleReasonHwSlowdown", "nvmlClocksThrottleReasonHwPowerBrakeSlowdown")
    mask = 0
    for name in names:
        mask |= int(getattr(pynvml, name, 0))
    return mask or 0x68  # SW thermal 0x20 | HW thermal 0x40 | HW slowdown 0x8
