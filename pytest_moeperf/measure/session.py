"""The suite's state for one pytest session: options, the loaded model, the GPU, the log.

Works without pytest: ``MoeperfSession(options).measure_case(case, run_rounds)`` is the
whole measurement; the plugin only passes pytest-benchmark's ``pedantic`` as run_rounds.
"""

from __future__ import annotations

import gc
import os
import time
from dataclasses import dataclass, field

from pytest_moeperf.device.gpu import Gpu, NoGpu
from pytest_moeperf.model.cases import Case
from pytest_moeperf.measure.measure import CaseRunner, MeasureSettings
from pytest_moeperf.measure.run_options import GPU_KINDS, RunOptions
from pytest_moeperf.measure.progress import NULL_PROGRESS, Progress
from pytest_moeperf.results.results_log import ResultsLog


class CaseFailed(RuntimeError):
    """A case could not be measured; the message is one line and is recorded in the log."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def check_gpu_kind(kind: str) -> str:
    """Stop unless the visible GPU is of the kind asked for; returns NVML's device name."""
    from pytest_moeperf.device.nvml import NvmlDevice

    try:
        name = NvmlDevice().identity()["name"] or "unknown"
    except Exception as exc:  # NVML missing: no GPU we can name
        raise ValueError(f"--gpu {kind}: no NVIDIA GPU found through NVML ({_first_line(exc)}); "
                         "run with --gpu cpu") from None
    if GPU_KINDS[kind].lower() not in name.lower():
        guess = next((k for k, sub in GPU_KINDS.items() if sub.lower() in name.lower()), "auto")
        raise ValueError(f"--gpu {kind}: the visible GPU is {name!r}, not an {kind.upper()}; "
                         f"pass --gpu {guess} (its baselines live in baselines/{guess}/)")
    return name


@dataclass
class MoeperfSession:
    options: RunOptions
    log: ResultsLog | None = None
    _loaded: object = None
    _gpu: Gpu = field(default_factory=NoGpu)  # NoGpu until a GPU is found (gpu())
    _gpu_checked: bool = False
    energy_unavailable: str | None = None
    idle_power_w: float | None = None
    finished: list = field(default_factory=list)
    # told about loads, priming and rounds between the phases (never inside a round)
    progress: Progress = NULL_PROGRESS

    # --- device ----------------------------------------------------------------------------
    @property
    def device_name(self) -> str:
        if self.options.device == "cuda":
            import torch

            return torch.cuda.get_device_name(0)
        import platform

        return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"

    def gpu(self):
        """NVML view of the GPU; NoGpu on the CPU or where NVML fails (the reason is kept)."""
        if not self._gpu_checked:
            self._gpu_checked = True
            if self.options.device != "cuda":
                self.energy_unavailable = NoGpu().reason
            else:
                from pytest_moeperf.device.energy import EnergyMeter

                try:
                    from pytest_moeperf.device.gpu import cuda0_device

                    self._gpu = cuda0_device()
                    self._meter = EnergyMeter(self._gpu)
                    self.idle_power_w = self._measure_idle_power()
                except Exception as exc:
                    self.energy_unavailable = _first_line(exc)
                    self._meter = None
        return self._gpu

    @property
    def energy_meter(self):
        self.gpu()
        return getattr(self, "_meter", None)

    def _measure_idle_power(self, seconds: float = 2.0) -> float | None:
        """Board power with nothing running, for the idle-subtracted figure (never the headline)."""
        import torch

        torch.cuda.synchronize()
        start = self._meter.begin_window()
        time.sleep(seconds)
        return self._meter.end_window(start).power_w

    def gpu_identity(self) -> dict | None:
        gpu = self.gpu()
        if isinstance(gpu, NoGpu):
            return None
        ident = gpu.identity()
        ident["idle_power_w"] = self.idle_power_w
        ident["other_processes"] = gpu.other_processes()
        return ident

    # --- models ----------------------------------------------------------------------------
    def model(self, name: str, dtype: str, experts: str | None):
        """The loaded model for a case; the previous one is dropped first (one on the device)."""
        from pytest_moeperf.model.loading import load_model, unload

        key = (name, dtype, experts)
        if self._loaded is not None and self._loaded_key == key:
            return self._loaded
        old, self._loaded = self._loaded, None
        unload(old)
        checkpoint = self.options.checkpoint_for(name)
        self.progress.model_loading(name, dtype=dtype, device=self.options.device,
                                    weights=checkpoint or "random")
        self._loaded = load_model(name, device=self.options.device, dtype=dtype,
                                  checkpoint=checkpoint, experts=experts, seed=self.options.seed)
        self._loaded_key = key
        self.progress.model_loaded(name, weights_bytes=self._loaded.weights_bytes, load_s=self._loaded.load_s)
        return self._loaded

    def release(self):
        from pytest_moeperf.model.loading import unload

        old, self._loaded = self._loaded, None
        unload(old)

    # --- one case --------------------------------------------------------------------------
    def settings(self) -> MeasureSettings:
        o = self.options
        return MeasureSettings(rounds=o.rounds, warmup_rounds=o.warmup_rounds, warmup_s=o.warmup_s, gc=o.gc,
                               energy_window_s=o.energy_window_s,
                               energy_windows=o.energy_windows, seed=o.seed, token_clock=o.token_clock,
                               static_cache=o.static_cache)

    def measure_case(self, case: Case, run_rounds) -> dict:
        """Measure ``case``; ``run_rounds(target, rounds, warmup_rounds)`` drives the rounds.

        Returns the extra_info dict. A case the plugin would refuse (a context past the model's
        positions, an unknown axis value) raises ValueError before anything loads.
        Failures (CUDA OOM, compile errors, ...) raise CaseFailed
        with one line, after memory is released, so the session goes on with the next case.
        """
        from pytest_moeperf.measure.run_options import check_case

        check_case(case)  # what the plugin checks at collection (context vs positions, axes): ValueError
        import torch

        error, runner = None, None
        try:
            gpu = self.gpu()  # first: idle power is read before any model occupies the GPU
            loaded = self.model(case.model, case.dtype, case.experts)
            others = gpu.other_processes()
            runner = CaseRunner(loaded, case, self.settings(), gpu=gpu, energy_meter=self.energy_meter,
                                energy_unavailable=self.energy_unavailable, idle_power_w=self.idle_power_w)
            self._drive_rounds(case, runner, run_rounds)
            others = others + [p for p in gpu.other_processes() if p not in others]
            return self._case_info(case, runner, loaded, gpu, others)
        except torch.OutOfMemoryError as exc:
            # torch's own first line already says "CUDA out of memory. Tried to allocate N GiB."
            asked = (str(exc).strip().splitlines() or ["CUDA out of memory"])[0]
            error = asked if "out of memory" in asked.lower() else f"CUDA out of memory: {asked}"
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            error = _first_line(exc)
        finally:
            if runner is not None:  # the collector back on (or unfrozen) whatever happened
                runner.release_host_gc()
        # Outside the except block: the exception and its traceback (which holds the failed
        # frames' tensors, the runner and the cache) are gone, so the memory really is freed.
        runner = None
        self._free_after_failure()
        raise CaseFailed(error)

    def _drive_rounds(self, case: Case, runner: CaseRunner, run_rounds) -> None:
        """Prime, warm up, plan and run the case's rounds, with their progress lines."""
        progress = self.progress
        progress.priming(case.case_id, backend=case.backend)
        runner.prime()
        progress.primed(case.case_id, first_call_s=runner.first_call_s, second_call_s=runner.second_call_s)
        runner.warm_up()
        rounds = runner.plan_rounds()
        per_round = min(t for t in (runner.first_call_s, runner.second_call_s) if t is not None)
        progress.rounds_started(case.case_id, rounds=rounds, warmup_rounds=runner.warmup_rounds,
                                energy_windows=self.options.energy_windows if self.energy_meter else None,
                                estimate_s=per_round * (rounds + runner.warmup_rounds))
        t_rounds = time.perf_counter()
        run_rounds(runner.round, rounds, runner.warmup_rounds)
        progress.rounds_finished(case.case_id, rounds=len(runner.rounds_done),
                                 energy_windows=runner.energy_windows_kept,
                                 elapsed_s=time.perf_counter() - t_rounds)

    def _case_info(self, case: Case, runner: CaseRunner, loaded, gpu, others: list) -> dict:
        """The case's extra_info after its rounds: the runner's, then the extra measurements."""
        info = runner.extra_info(self.device_name)
        # the paper's 1-token TTFT; not on the static backend, where a different generate
        # length means a different static cache shape and a recompile
        info["paper_ttft_ms"] = _median(runner.paper_ttft()) if case.backend == "eager" else None
        if self.options.energy_split:
            from pytest_moeperf.measure.energy_split import measure_split

            try:
                info["energy_split"] = measure_split(runner, self.energy_meter, self.options.energy_windows,
                                                     self.options.energy_window_s)
            except Exception as exc:  # the split is extra: it never costs the case
                info["energy_split"] = {"unavailable": _first_line(exc)}
        info.update(self._roofline(loaded, info))
        info["second_call_s"] = runner.second_call_s
        info["compile_cache"] = self.options.compile_cache if case.backend == "static" else None
        if self.options.routing and loaded.architecture == "moe":
            from pytest_moeperf.model.routing import routing_stats

            info["routing"] = routing_stats(loaded.model, runner.input_ids)
        info["gpu_uuid"] = gpu.identity().get("uuid")
        info["other_gpu_processes"] = others
        info["contaminated"] = bool(others)
        return info

    def bandwidth(self) -> float | None:
        """Device-to-device copy bandwidth, measured once per session (CUDA only)."""
        if not hasattr(self, "_bandwidth"):
            from pytest_moeperf.measure.roofline import measure_copy_bandwidth

            self._bandwidth = measure_copy_bandwidth() if self.options.device == "cuda" else None
        return self._bandwidth

    def _roofline(self, loaded, info: dict) -> dict:
        from pytest_moeperf.metrics.derived import decode_step_bytes, roofline_fraction

        cfg = loaded.model.config
        step = decode_step_bytes(loaded.params.active, loaded.params.input_embedding, loaded.model.dtype.itemsize,
                                 info["kv_cache_bytes"], info["batch_size"], loaded.params.inactive_experts,
                                 getattr(cfg, "num_local_experts", None), getattr(cfg, "num_experts_per_tok", None))
        bw = self.bandwidth()
        return {"decode_step_bytes": step, "memory_bandwidth_bytes_per_s": bw,
                "roofline_fraction": roofline_fraction(step, bw, info.get("tpot_ms"))}

    def _free_after_failure(self):
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:
            pass


def _median(values):
    from pytest_moeperf.metrics.stats import median

    return median(values)
