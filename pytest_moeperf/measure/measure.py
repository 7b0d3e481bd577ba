"""Measure one case: instrumented generate() rounds, energy windows, memory. No pytest here.

One round is one ``generate`` call with ``min_new_tokens == max_new_tokens`` (the count is
checked). A stopping criterion, which transformers calls once per new token, stamps each
token: the first stamp is TTFT (prefill included), the gaps are the inter-token latencies.
On CUDA the stamp is a CUDA event recorded on the stream (no host stall), read after the
round's closing sync relative to an event recorded at the round's start; elsewhere the
criterion synchronizes the device and reads the host clock. A sync per token cost +0.5% to
+1.75% of E2E on the H200's ~10 ms/token static decode (docs/metrics.md): transformers
already waits once per step, but its wait comes after the step's last small kernels are
queued, the clock's before them.

Energy windows span consecutive measured rounds: the counter is read at round boundaries
and a window closes at the first boundary past ``energy_window_s``, so energy costs no
extra runs. Rounds are raised, if needed, so that ``energy_windows`` windows fit.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from pytest_moeperf.model.cases import DECODING_PRESETS, Case
from pytest_moeperf.device.energy import MIN_WINDOW_S
from pytest_moeperf.device.gpu import Gpu, NoGpu
from pytest_moeperf.device.gpu_state import GpuState
from pytest_moeperf.measure.case_result import CaseResult, to_extra_info, valid_windows
from pytest_moeperf.measure.host_gc import DEFAULT_POLICY, GcPolicy, GcWatch
from pytest_moeperf.measure.outputs_check import (DEFAULT_STATIC_CACHE, OutputRecord, ReusedStaticCache, logits_path,
                                                  save_first_step_logits)
from pytest_moeperf.measure.token_clock import RoundTiming, _sync_fn, make_token_clock, token_clock_kind



class TokenCountError(RuntimeError):
    pass


@dataclass(frozen=True)
class MeasureSettings:
    rounds: int = 10
    warmup_rounds: int = 0  # --moeperf-warmup-rounds' default: the two priming calls warm up already
    warmup_s: float = 0.0  # --moeperf-warmup-s: discarded calls for this long after priming (warm_up)
    gc: str = DEFAULT_POLICY  # --moeperf-gc: the collector during the rounds (host_gc.POLICIES)
    energy_window_s: float = 5.0
    energy_windows: int = 5
    max_rounds: int = 400
    paper_ttft_trials: int = 5
    seed: int = 0
    token_clock: str = "auto"  # auto (CUDA events on cuda, else sync) | event | sync
    static_cache: str = DEFAULT_STATIC_CACHE  # --moeperf-static-cache: fresh (transformers' own) | reuse


@dataclass
class CaseRunner:
    """Runs the rounds of one case on a loaded model and turns them into extra_info."""

    loaded: object  # LoadedModel
    case: Case
    settings: MeasureSettings
    gpu: Gpu = field(default_factory=NoGpu)  # device.nvml.NvmlDevice when NVML works
    energy_meter: object | None = None  # energy.EnergyMeter, when the counter works
    energy_unavailable: str | None = None
    idle_power_w: float | None = None  # measured once per session, for the idle-subtracted figure
    rounds_done: list = field(default_factory=list)
    windows: list = field(default_factory=list)
    calls: int = 0
    first_call_s: float | None = None
    second_call_s: float | None = None
    planned_rounds: int | None = None  # set by plan_rounds: calls beyond warm-up + these are not recorded
    gpu_states: list = field(default_factory=list)  # gpu_state.GpuState after each measured round
    warmup_calls: int = 0  # discarded calls made by warm_up
    now: object = time.perf_counter  # the warm-up's clock (tests hand in their own)
    gc_watch: GcWatch = field(default_factory=GcWatch)
    outputs: OutputRecord = field(default_factory=OutputRecord)

    @property
    def warmup_rounds(self) -> int:
        """Calls of ``round`` discarded before the measured ones (pytest-benchmark's warm-up)."""
        return self.settings.warmup_rounds

    def __post_init__(self):
        import torch

        from pytest_moeperf.model.context import build_exact_context

        self.device = self.loaded.device
        self.sync = _sync_fn(self.device)
        ctx = build_exact_context(self.loaded.tokenizer, self.case.context_tokens,
                                  seed=self.settings.seed, mode=self.case.context_mode)
        self.context = ctx
        ids = torch.tensor([ctx.input_ids] * self.case.batch_size, dtype=torch.long, device=self.device)
        self.input_ids = ids
        self.attention_mask = torch.ones_like(ids)
        self.clock = make_token_clock(self.sync, token_clock_kind(self.settings.token_clock, self.device))
        tok = self.loaded.tokenizer
        eos = tok.eos_token_id if tok.eos_token_id is not None else 0
        pad = tok.pad_token_id if tok.pad_token_id is not None else eos
        n = self.case.new_tokens
        self.gen_kwargs = dict(max_new_tokens=n, min_new_tokens=n, eos_token_id=eos, pad_token_id=pad,
                               return_dict_in_generate=True, stopping_criteria=[self.clock],
                               **DECODING_PRESETS[self.case.decoding])
        if not self.gen_kwargs.get("do_sample"):
            # transformers warns when sampling knobs are set on greedy: keep greedy clean
            self.gen_kwargs.update(temperature=None, top_p=None, top_k=None)
        if self.case.backend == "static":
            self.gen_kwargs["cache_implementation"] = "static"
            if not str(self.device).startswith("cuda"):
                # transformers auto-compiles the decode step only on cuda/xpu/tpu; elsewhere a static
                # cache alone would run eager: "static" means static cache + torch.compile everywhere
                from pytest_moeperf.model.compat import compile_on_every_device

                self.gen_kwargs["compile_config"] = compile_on_every_device()
        self.reused_cache = None
        if self.case.backend == "static" and self.settings.static_cache == "reuse":
            self.gen_kwargs.pop("cache_implementation")
            self.reused_cache = ReusedStaticCache(self.loaded.model, len(ctx.input_ids) + n - 1)  # as generate sizes it
        self._window_start = None
        self._window_rounds = 0
        self._window_tokens = 0
        self.pre_decode_allocated_bytes = None
        self.last_cache = None
        self.throttle_mask = self.gpu.throttle_mask()
        self.gc_policy = GcPolicy(self.settings.gc)

    # --- one generate call -------------------------------------------------------------------
    def _generate(self, round_index: int, with_clock: bool = True) -> tuple[RoundTiming, object]:
        import torch

        kwargs = dict(self.gen_kwargs)
        if not with_clock:
            kwargs.pop("stopping_criteria")
        if kwargs.get("do_sample"):
            torch.manual_seed(self.settings.seed + round_index)
        health0 = self._health()
        t0, t1, out = self._timed_generate(kwargs, self.clock if with_clock else None)
        new = out.sequences.shape[1] - self.input_ids.shape[1]
        if new != self.case.new_tokens:
            raise TokenCountError(f"generate produced {new} new tokens, expected {self.case.new_tokens}")
        if with_clock and len(self.clock.stamps) != new:
            raise TokenCountError(f"the token clock stamped {len(self.clock.stamps)} tokens, generate produced {new}")
        throttled, capped = self._health_delta(health0)
        stamps = tuple((s - t0) * 1000.0 for s in self.clock.stamps) if with_clock else ((t1 - t0) * 1000.0,) * new
        return RoundTiming(e2e_ms=(t1 - t0) * 1000.0, token_ms=stamps, batch_size=self.case.batch_size,
                           throttled=throttled, power_capped=capped), out

    def _health(self):
        try:
            return self.gpu.violation_ns()
        except Exception:
            return None

    def _health_delta(self, before) -> tuple[bool, bool]:
        if before is None:
            return False, False
        try:
            after = self.gpu.violation_ns()
            reasons = self.gpu.clock_event_reasons()
        except Exception:
            return False, False
        thermal = after.get("thermal", 0) > before.get("thermal", 0)
        capped = after.get("power", 0) > before.get("power", 0)
        return bool(thermal or (reasons & self.throttle_mask)), bool(capped)

    # --- phases -------------------------------------------------------------------------------
    def prime(self) -> float:
        """Two discarded calls: the first is cold (compiles the static backend, reported as first_call_s);
        the faster of the two sizes the rounds."""
        t0 = time.perf_counter()
        self._generate(-1)
        self.first_call_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        self._generate(-2)
        self.second_call_s = time.perf_counter() - t0
        return self.second_call_s

    def release_host_gc(self) -> None:
        """The collector back as it was and the watch unhooked (after the rounds, also after a failure)."""
        self.gc_policy.restore()
        self.gc_watch.close()

    def warm_up(self) -> int:
        """Discarded calls until ``warmup_s`` seconds have passed (none by default); returns their count.

        A time, not a count: what settles (clocks, temperature, the host's caches) settles in
        seconds whatever one call costs.
        """
        t0 = self.now()
        while self.now() - t0 < self.settings.warmup_s:
            self._generate(-3 - self.warmup_calls)
            self.warmup_calls += 1
        return self.warmup_calls

    def plan_rounds(self) -> int:
        """Requested rounds, raised so that ``energy_windows`` windows of >= energy_window_s fit.

        Windows close at the first round boundary past energy_window_s, so every window is
        long enough whatever the rounds do; the count is planned from the faster priming
        call with a 20% margin, since eager rounds on a host-bound GPU drift and jump.
        """
        rounds = self.settings.rounds
        estimate = min(t for t in (self.first_call_s, self.second_call_s) if t)
        if self.energy_meter is not None and estimate:
            per_window = math.ceil(self.settings.energy_window_s / (0.8 * estimate))
            needed = per_window * self.settings.energy_windows
            rounds = max(rounds, min(needed, self.settings.max_rounds))
        self.planned_rounds = rounds
        return rounds

    def round(self) -> None:
        """The pytest-benchmark target: one round; the first ``warmup_rounds`` calls are discarded."""
        index = self.calls
        self.calls += 1
        if self.planned_rounds is not None and index >= self.warmup_rounds + self.planned_rounds:
            # a call after the planned rounds (pytest-benchmark's --benchmark-cprofile profiles
            # one more): run it, record nothing, so the rounds match pytest-benchmark's stats
            self._generate(index)
            return
        measured = index >= self.warmup_rounds
        if measured and index == self.warmup_rounds:
            self._begin_measurement()
        if measured and self.energy_meter is not None and self._window_start is None:
            self.sync()
            self._window_start = self.energy_meter.begin_window()
        # the previous round's KV cache must not be alive while this round allocates its own:
        # the allocator peak is that of one generate with its cache, as docs/metrics.md says
        self.last_cache = None
        if measured:
            self.gc_watch.round_started()
        timing, out = self._generate(index)
        if not measured:
            return
        self.gc_watch.round_ended()
        self.rounds_done.append(timing)
        self.outputs.add(out.sequences[:, self.input_ids.shape[1]:].tolist())  # after the closing sync
        self.last_cache = self.reused_cache.cache if self.reused_cache else getattr(out, "past_key_values", None)
        self.gpu_states.append(GpuState.read(self.gpu))  # after the timed call, never inside it
        self.gc_policy.after_round()
        if self.energy_meter is not None:
            self._window_rounds += 1
            self._window_tokens += timing.new_tokens * timing.batch_size
            if self.energy_meter.elapsed_s(self._window_start) >= self.settings.energy_window_s:
                self._close_window()

    def _begin_measurement(self):
        import torch

        from pytest_moeperf.measure.memory import reset_peak_rss

        reset_peak_rss()  # the RSS peak is per case, not whatever ran earlier in the process
        self.gc_policy.apply()
        if self.device.startswith("cuda"):
            self.sync()
            # reset_peak_memory_stats sets the reserved peak to what is reserved now: release
            # the pool earlier cases left behind, or their peak would be reported as this one's
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            self.pre_decode_allocated_bytes = int(torch.cuda.memory_allocated())

    def _close_window(self):
        w = self.energy_meter.end_window(self._window_start, rounds=self._window_rounds, tokens=self._window_tokens)
        if w.duration_s >= MIN_WINDOW_S:  # shorter windows scatter 16-23%: refused
            self.windows.append(w)
        self._window_start = None
        self._window_rounds = 0
        self._window_tokens = 0

    def paper_ttft(self) -> list[float]:
        """The paper's TTFT: wall time of a 1-token generate, median of 5 (no per-token clock)."""
        times = []
        kwargs = dict(self.gen_kwargs, max_new_tokens=1, min_new_tokens=1)
        kwargs.pop("stopping_criteria")
        for _ in range(self.settings.paper_ttft_trials):
            t0, t1, _ = self._timed_generate(kwargs)
            times.append((t1 - t0) * 1000.0)
        return times

    def _timed_generate(self, kwargs: dict, clock=None) -> tuple[float, float, object]:
        """One generate call between device syncs: (start, end, output), perf_counter seconds."""
        import torch

        if self.reused_cache is not None:
            with torch.inference_mode():  # its tensors were made under inference mode
                kwargs = {**kwargs, **self.reused_cache.kwargs()}
        self.sync()
        t0 = time.perf_counter()
        if clock is not None:
            clock.begin(t0)
        with torch.inference_mode():
            out = self.loaded.model.generate(input_ids=self.input_ids, attention_mask=self.attention_mask, **kwargs)
        self.sync()
        t1 = time.perf_counter()
        if clock is not None:
            clock.finish()
        return t0, t1, out

    # --- results --------------------------------------------------------------------------
    def result(self, device_name: str, backend_label: str | None = None) -> CaseResult:
        """What the case measured, read once after its rounds (the trailing short window is dropped)."""
        import torch

        from pytest_moeperf.measure.memory import cache_tensor_bytes, kv_cache_bytes, kv_layout, peak_rss_bytes

        self._window_start = None  # a trailing window shorter than energy_window_s is dropped
        self.release_host_gc()
        case, loaded = self.case, self.loaded
        on_cuda = self.device.startswith("cuda")
        layout = kv_layout(loaded.model.config)
        cached_tokens = case.context_tokens + case.new_tokens - 1  # the last token is never fed back
        static_len = None
        if case.backend == "static" and self.last_cache is not None:
            layers = getattr(self.last_cache, "layers", [])
            full = [lay for lay in layers if not getattr(lay, "is_sliding", False)]
            static_len = getattr(full[0], "max_cache_len", None) if full else None
        energy_reason = self.energy_unavailable
        if self.energy_meter is not None and not valid_windows(self.windows):
            energy_reason = (f"no energy window of >= {self.settings.energy_window_s} s closed "
                             f"({len(self.rounds_done)} rounds); raise --moeperf-rounds")
        return CaseResult(
            model=loaded.name, architecture=loaded.architecture, weights=loaded.weights,
            checkpoint=loaded.checkpoint, dtype=loaded.dtype, backend=backend_label or case.backend,
            experts=loaded.experts, device_name=device_name, context_tokens=len(self.context.input_ids),
            context_overhead_tokens=self.context.overhead_tokens, context_mode=case.context_mode,
            batch_size=case.batch_size, decoding=case.decoding, params_total=loaded.params.total,
            params_active=loaded.params.active, weights_bytes=loaded.weights_bytes,
            rounds=tuple(self.rounds_done), warmup_rounds=self.warmup_rounds, warmup_s=self.settings.warmup_s,
            warmup_calls=self.warmup_calls, gpu_states=tuple(self.gpu_states),
            host_gc=self.gc_watch.summary(self.gc_policy.name), token_clock=self.clock.kind,
            first_call_s=self.first_call_s,
            peak_allocated_bytes=int(torch.cuda.max_memory_allocated()) if on_cuda else None,
            peak_reserved_bytes=int(torch.cuda.max_memory_reserved()) if on_cuda else None,
            peak_rss_bytes=peak_rss_bytes(), pre_decode_allocated_bytes=self.pre_decode_allocated_bytes,
            kv_cache_bytes=kv_cache_bytes(layout, cached_tokens, case.batch_size, loaded.model.dtype.itemsize,
                                          static_len),
            kv_cache_measured_bytes=cache_tensor_bytes(self.last_cache) if self.last_cache is not None else None,
            kv_cache_layout={"full_layers": layout.layers_full, "sliding_layers": layout.layers_sliding,
                             "sliding_window": layout.sliding_window, "cached_tokens": cached_tokens,
                             "static_max_cache_len": static_len},
            windows=tuple(valid_windows(self.windows)), energy_unavailable=energy_reason,
            idle_power_w=self.idle_power_w,
            static_cache=self.settings.static_cache if case.backend == "static" else None,
            output=self.outputs.summary())

    def extra_info(self, device_name: str, backend_label: str | None = None) -> dict:
        """The case's pytest-benchmark extra_info: :func:`case_result.to_extra_info` of :meth:`result`."""
        info = to_extra_info(self.result(device_name, backend_label))
        saved = self._save_logits_if_asked()  # after the peaks are read: its call allocates too
        if saved and info["output"] is not None:
            info["output"]["logits_file"] = saved
        return info

    def _save_logits_if_asked(self) -> str | None:
        """The first decode step's logits, for the A/B command's same-weights check (greedy cases only);
        returns the file's name when one was written."""
        path = logits_path(self.case.case_id)
        if path is None or self.gen_kwargs.get("do_sample"):
            return None
        kwargs = dict(self.gen_kwargs, max_new_tokens=2, min_new_tokens=2, output_logits=True)
        kwargs.pop("stopping_criteria")
        _, _, out = self._timed_generate(kwargs)
        save_first_step_logits(out, path)
        return path.name

    @property
    def energy_windows_kept(self) -> int:
        """Energy windows closed so far that the figures will use."""
        return len(valid_windows(self.windows))
