"""The pytest plugin: options, hooks and tiny fixtures. Measurement lives elsewhere.

Loading this module imports neither torch, transformers nor pynvml (a test proves it):
they load when the first benchmark case is collected or measured.
"""

from __future__ import annotations

import os
import sys

import pytest

from pytest_moeperf.plugin.options import (BACKENDS, CONTEXT_MODES, DEFAULT_RESULTS_PATH, DEFAULT_VERDICT_JSON, DTYPES, EXPERTS,
                      GPU_KINDS, parse_options)
from pytest_moeperf.results.outputs import check_run_outputs, drop_unfinished, quiet_unused_fixture

SESSION_KEY = "_moeperf"


def pytest_addhooks(pluginmanager):
    from pytest_moeperf.plugin import hookspec

    pluginmanager.add_hookspecs(hookspec)


def pytest_addoption(parser):
    g = parser.getgroup("moeperf", "pytest-moeperf: deployment benchmarks of MoE and dense LLMs")
    g.addoption("--gpu", dest="moeperf_gpu", metavar="KIND", default=None,
                help=f"cpu, auto (default) or a GPU kind that must be present ({', '.join(GPU_KINDS)}); "
                     "a kind selects baselines/KIND/ as pytest-benchmark storage")
    add = g.addoption
    add("--moeperf-models", metavar="NAMES", default=None,
        help="comma-separated presets (default: tiny-moe,tiny-dense on CPU; gpt-oss-20b,qwen3-32b,yi-34b on GPU)")
    add("--moeperf-contexts", metavar="TOKENS", default=None,
        help="comma-separated exact post-template context lengths (default: 64,128 CPU; 128,512,1024,2048 GPU)")
    add("--moeperf-new-tokens", metavar="N", default=None, help="comma-separated new tokens per round (default 16 CPU, 64 GPU)")
    add("--moeperf-rounds", metavar="N", default=None, help="minimum measured rounds per case (default 10)")
    add("--moeperf-warmup-rounds", metavar="N", default=None, help="discarded warm-up rounds after the two priming calls (default 0)")
    add("--moeperf-warmup-s", metavar="S", default=None,
        help="also discard calls for this many seconds after the priming calls, for clocks and temperature to "
             "settle (default: none)")
    add("--moeperf-dtype", metavar="DTYPES", default=None, help=f"comma-separated, from {', '.join(DTYPES)} (default bf16)")
    add("--moeperf-backend", metavar="NAMES", default=None,
        help=f"comma-separated, from {', '.join(BACKENDS)} (static = static cache + torch.compile; default eager)")
    add("--moeperf-batch", metavar="SIZES", default=None, help="comma-separated batch sizes (default 1)")
    add("--moeperf-decoding", metavar="NAMES", default=None,
        help="comma-separated: greedy, top_p0.9, top_k50, temp1.5, temp0.3 (default greedy)")
    add("--moeperf-experts", metavar="NAMES", default=None,
        help=f"MoE experts_implementation, comma-separated from {', '.join(EXPERTS)} (default: transformers' own)")
    add("--moeperf-context-mode", metavar="MODE", default=None,
        help=f"{' or '.join(CONTEXT_MODES)} (paper-truncate reproduces the paper's trim; default exact)")
    add("--moeperf-weights", metavar="MODEL=PATH", action="append", default=[],
        help="load MODEL from a checkpoint path or hub id instead of random weights (repeatable)")
    add("--moeperf-energy-window-s", metavar="S", default=None, help="energy window length in seconds (default 5, min 1)")
    add("--moeperf-energy-windows", metavar="N", default=None, help="energy windows per case (default 5)")
    add("--moeperf-energy-split", action="store_true", default=False,
        help="also measure prefill J per request and decode J per token from extra windows of 1-token rounds "
             "(GPU, eager backend; adds energy-windows x window-s per case)")
    add("--moeperf-results", metavar="PATH", default=None,
        help=f"append each finished case to this JSON-lines log (default {DEFAULT_RESULTS_PATH})")
    add("--moeperf-routing", action="store_true", default=False,
        help="also record MoE routing statistics (tokens per expert per layer, load, entropy) in an untimed pass")
    add("--moeperf-compile-cache", metavar="DIR", default=None,
        help="torch.compile/inductor cache folder for the static backend (keep it between CI runs for warm compiles)")
    add("--moeperf-resume", action="store_true", default=False,
        help="skip the cases already finished in the results log (after a crash or a job time-out); "
             "python -m pytest_moeperf results LOG --json run.json then gives the whole run")
    add("--moeperf-seed", metavar="N", default=None, help="seed for random weights and sampling (default 0)")
    add("--moeperf-token-clock", metavar="KIND", default=None,
        help="per-token stamps: auto (CUDA events on a GPU, a device sync elsewhere), event or sync "
             "(a sync per token: the clock of runs stored before it changed; default auto)")
    # the regression gate (pytest_moeperf.plugin.gate_pytest)
    add("--moeperf-gate", metavar="PATH|auto|off", default="auto",
        help="baseline to gate against: a JSON file or folder, auto (the --benchmark-compare run or the newest "
             "run in the storage of --gpu) or off")
    add("--moeperf-threshold", metavar="METRIC=PCT", action="append", default=[],
        help="override the gate's practical threshold for a metric (repeatable)")
    add("--moeperf-allow", metavar="METRIC[@BENCH]", action="append", default=[],
        help="acknowledged regression: FAIL becomes WARN for this metric (repeatable)")
    add("--moeperf-gate-strict", action="store_true", default=False, help="INCONCLUSIVE verdicts also fail the run")
    add("--moeperf-gate-ignore-gpu", action="store_true", default=False,
        help="compare even when the baseline was measured on another GPU kind")
    add("--moeperf-verdict-json", metavar="PATH", default=DEFAULT_VERDICT_JSON, help="where to write the gate's verdicts")
    # an OpenAI-compatible server instead of the in-process engine (docs/serving.md)
    add("--moeperf-endpoint", metavar="URL", default=None,
        help="benchmark the OpenAI-compatible server at URL (e.g. http://127.0.0.1:8000/v1); requests go only there")
    add("--moeperf-endpoint-model", metavar="NAME", default=None, help="the model name the server expects")
    add("--moeperf-endpoint-api", metavar="API", default=None, help="chat (default) or completions")
    add("--moeperf-endpoint-timeout-s", metavar="S", default=None,
        help="one request's time limit; past it the request is recorded as failed (default 60)")
    add("--moeperf-endpoint-ready-timeout-s", metavar="S", default=None,
        help="how long to wait for the server's first answer (load and warm-up; default 180)")
    add("--moeperf-endpoint-eos-field", metavar="KIND", default=None,
        help="how to force the output length past EOS: auto (default), ignore_eos, generation_config, none")
    add("--moeperf-endpoint-gpu-index", metavar="N", default=None,
        help="NVML index of the server's GPU when it is on this machine: energy is read from it (default: no energy)")
    add("--moeperf-endpoint-tokenizer", metavar="PATH", default=None,
        help="the served model's tokenizer (folder or id) to build exact prompts and check token counts "
             "(default: the model name when it is a local folder)")
    add("--moeperf-baseline-segment", metavar="all|last-stable", default="all",
        help="last-stable: gate against the stored runs since each benchmark's newest change point, pooled "
             "(python -m pytest_moeperf history; needs apache-otava); all: every stored run (default)")


def _getter(config):
    return lambda name: config.getoption(name, None)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    config.addinivalue_line("markers", "moeperf: a pytest-moeperf deployment benchmark")
    get = _getter(config)
    gpu = (get("moeperf_gpu") or "auto").lower()
    try:
        # Validate every value now, without torch: a GPU kind is checked through NVML below; with
        # auto the CPU defaults are the laxer ones (fewer new tokens, 4096-position presets), so no
        # valid run is refused here; GPU-only limits are checked at collection (options()).
        options = parse_options(get, cuda_available=gpu in GPU_KINDS)
        gpu = options.gpu
        from pytest_moeperf.serving.endpoint import parse_endpoint  # pure: no httpx

        parse_endpoint(get)
        if gpu in GPU_KINDS:
            from pytest_moeperf.measure.session import check_gpu_kind

            check_gpu_kind(gpu)
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    if gpu not in ("auto",) and config.getoption("benchmark_storage", None) in (None, "file://./.benchmarks"):
        # baselines of different GPU kinds must never mix: one storage folder per kind
        config.option.benchmark_storage = f"file://{os.path.join(str(config.rootpath), 'baselines', gpu)}"
    if not hasattr(config, "workerinput"):  # xdist workers write none of these files themselves
        try:
            check_run_outputs(_getter(config), options, given_only=True)
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None
    cache = get("moeperf_compile_cache")
    if cache:  # must be set before inductor first reads it
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.abspath(os.path.expanduser(cache))
    state = MoeperfState(config)
    setattr(config, SESSION_KEY, state)
    config.pluginmanager.register(state, "moeperf-state")
    if not hasattr(config, "workerinput"):  # an xdist worker's terminal goes nowhere
        from pytest_moeperf.plugin.progress_pytest import TerminalProgress

        state.progress = TerminalProgress(config)
        state.progress.track_cases(state.case_of)
        config.pluginmanager.register(state.progress, "moeperf-progress")
    try:
        from pytest_moeperf.plugin.gate_pytest import GatePlugin
    except ImportError:  # the gate module is optional at import time of partial installs
        return
    config.pluginmanager.register(GatePlugin(config), "moeperf-gate")


def _check_benchmark_versions() -> None:
    """A pytest / pytest-benchmark pair that cannot run a benchmark stops before any model loads."""
    from importlib.metadata import version

    from pytest_moeperf.plugin.bench_api import incompatible_versions

    why = incompatible_versions(pytest.__version__, version("pytest-benchmark"))
    if why:
        raise pytest.UsageError(why)


class MoeperfState:
    """Per-pytest-session wiring around a MoeperfSession (created on first use)."""

    def __init__(self, config):
        self.config = config
        self._session = None
        self.finished: list[tuple] = []  # (case, extra_info)
        self.failed: list[tuple] = []  # (case, error)
        self._log_started = False
        self.cases_by_id: dict = {}  # case id -> Case, filled at parametrization
        self.resumed: list[str] = []  # case ids skipped by --moeperf-resume
        self.resume_notes: list[str] = []  # why logged cases were not skipped, torn lines ...
        self.started: set[str] = set()  # nodeids of cases whose rounds began in this process
        self.finished_nodeids: set[str] = set()
        self.moeperf_items = 0
        self._usage_error: pytest.UsageError | None = None  # raised after collection: exit 4, no traceback
        self.progress = None  # progress_pytest.TerminalProgress, set at configure (not on xdist workers)

    @property
    def session(self):
        if self._session is None:
            from pytest_moeperf.results.results_log import ResultsLog
            from pytest_moeperf.measure.session import MoeperfSession

            from pytest_moeperf.results.results_log import options_fingerprint, options_settings

            options = self.options()
            try:
                log = ResultsLog(options.results_path, options_fingerprint(options), options_settings(options))
            except ValueError as exc:
                raise pytest.UsageError(f"--moeperf-results: {exc}") from None
            self._session = MoeperfSession(options, log=log)
            if self.progress is not None:
                self._session.progress = self.progress
        return self._session

    def case_of(self, item):
        """The Case a collected item measures, or None for other tests."""
        spec = getattr(item, "callspec", None)
        case_id = spec.params.get("moeperf_case") if spec is not None else None
        return self.cases_by_id.get(case_id) if case_id is not None else None

    def options(self):
        import torch

        try:
            return parse_options(_getter(self.config), cuda_available=torch.cuda.is_available())
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None

    def machine_info_extra(self) -> dict:
        info = {"moeperf_version": _version()}
        for mod in ("torch", "transformers"):
            if mod in sys.modules:
                info[f"{mod}_version"] = getattr(sys.modules[mod], "__version__", None)
        if self._session is not None:
            if "torch" in sys.modules:
                info["cuda_version"] = sys.modules["torch"].version.cuda
            info["gpu"] = self._session.gpu_identity()
            info["moeperf_device"] = self._session.device_name
        elif (self.config.getoption("moeperf_gpu", None) or "auto").lower() == "cpu":
            info["moeperf_device"] = "cpu"  # known before any case: the gate refuses a GPU baseline up front
        else:
            # before any case ran (the gate checks the GPU at session start): NVML alone names
            # the GPU, without importing torch
            from pytest_moeperf.measure.gpu import identity_or_none

            info["gpu"] = identity_or_none()
        return info

    def log_case(self, bench: dict) -> None:
        log = self.session.log
        if not self._log_started:
            log.session_started(self.machine_info_extra())
            self._log_started = True
        log.case_finished(bench)

    # --- hooks ----------------------------------------------------------------------------
    def pytest_generate_tests(self, metafunc):
        if "moeperf_case" not in metafunc.fixturenames:
            return
        try:
            _check_benchmark_versions()
            cases = self.session.options.cases()
            self.config.hook.pytest_moeperf_modify_cases(config=self.config, cases=cases)
            self._check_cases(cases)
            self._check_contexts(cases)
        except pytest.UsageError as exc:
            # raised here it would become a collection error with a traceback (exit 2)
            self._usage_error = self._usage_error or exc
            cases = []
        # parametrize by id (indirect): pytest-benchmark stores params as JSON, and a plain
        # string keeps them readable ({"moeperf_case": "gpt-oss-20b-c2048-n64"})
        self.cases_by_id.update({c.case_id: c for c in cases})
        ids = [c.case_id for c in cases]
        metafunc.parametrize("moeperf_case", ids, ids=ids, indirect=True)

    def pytest_collection_finish(self, session):
        if self._usage_error is not None:
            raise self._usage_error

    def _check_cases(self, cases):
        """The matrix after pytest_moeperf_modify_cases: each case valid and measured once."""
        from pytest_moeperf.plugin.options import check_case, check_unique_cases

        try:
            check_unique_cases(cases)
            for case in cases:
                check_case(case)
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, session, config, items):
        """--moeperf-resume: deselect the cases the results log already holds as finished."""
        self.moeperf_items = sum(1 for i in items if "moeperf_case" in getattr(i, "callspec", _NoSpec).params)
        if (self.moeperf_items and config.getoption("benchmark_disable", False)
                and not config.getoption("benchmark_enable", False) and self._usage_error is None):
            # disabled, pytest-benchmark runs the target once and keeps no stats: nothing could be
            # measured honestly, logged or summarised (docs/faults.md)
            self._usage_error = pytest.UsageError(
                "--benchmark-disable: moeperf cases are measurements and record nothing when benchmarks are "
                "disabled; drop it, or leave the cases out with --benchmark-skip or -m 'not moeperf'")
        if self.moeperf_items and self._usage_error is None and not hasattr(config, "workerinput"):
            try:  # the default paths too, now that cases will be measured (before any model loads)
                check_run_outputs(_getter(config), self.session.options)
            except ValueError as exc:
                self._usage_error = pytest.UsageError(str(exc))
        if not config.getoption("moeperf_resume", False) or self._usage_error is not None:
            return
        from pytest_moeperf.results.results_log import resume_plan

        try:
            done, self.resume_notes = resume_plan(self.session.options)
        except (OSError, ValueError) as exc:
            raise pytest.UsageError(f"--moeperf-resume: {exc}") from None
        keep, skipped = [], []
        for item in items:
            spec = getattr(item, "callspec", None)
            case_id = spec.params.get("moeperf_case") if spec is not None else None
            (skipped if case_id in done else keep).append(item)
        if skipped:
            config.hook.pytest_deselected(items=skipped)
            items[:] = keep
        self.resumed = [i.callspec.params["moeperf_case"] for i in skipped]

    def _check_contexts(self, cases):
        """A context below a chat template's fixed overhead stops the run before any model loads."""
        from pytest_moeperf.model.context import ContextError, build_exact_context
        from pytest_moeperf.model.presets import get_preset
        from pytest_moeperf.model.tokenizer import get_tokenizer

        smallest: dict[str, int] = {}
        for c in cases:
            smallest[c.model] = min(smallest.get(c.model, c.context_tokens), c.context_tokens)
        for model, ctx in smallest.items():
            p = get_preset(model)
            checkpoint = self.session.options.checkpoint_for(model)
            try:
                tok = get_tokenizer(p.family, p.vocab_size, checkpoint)
            except ValueError as exc:  # the checkpoint's tokenizer: a --moeperf-weights problem
                raise pytest.UsageError(f"--moeperf-weights: {model}={checkpoint}: {exc}") from None
            try:
                build_exact_context(tok, ctx)
            except (ContextError, ValueError) as exc:
                raise pytest.UsageError(f"--moeperf-contexts: {model}: {exc}") from None

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        if call.when != "call" or "moeperf_case" not in getattr(item, "callspec", _NoSpec).params:
            return
        report = outcome.get_result()
        case = self.cases_by_id[item.callspec.params["moeperf_case"]]
        fixture = getattr(item, "funcargs", {}).get("benchmark")
        if report.passed and fixture is not None and getattr(fixture, "stats", None) is not None:
            bench = fixture.stats.as_dict(include_data=True)
            self.log_case(bench)
            self.finished.append((case, bench["extra_info"]))
            self.finished_nodeids.add(item.nodeid)
            self.config.hook.pytest_moeperf_case_finished(config=self.config, case=case, extra_info=bench["extra_info"])
        elif report.failed:
            quiet_unused_fixture(fixture)
            error = _report_line(report)
            self.session.log.case_failed(item.nodeid, case.case_id, error)
            self.failed.append((case, error))
            self.config.hook.pytest_moeperf_case_failed(config=self.config, case=case, error=error)

    def pytest_runtest_call(self, item):
        if "moeperf_case" in getattr(item, "callspec", _NoSpec).params:
            self.started.add(item.nodeid)

    def pytest_benchmark_update_machine_info(self, config, machine_info):
        machine_info.update(self.machine_info_extra())

    def pytest_benchmark_update_json(self, config, benchmarks, output_json):
        """A case cut short (Ctrl-C mid-rounds) has stats but never finished: drop it from the
        --benchmark-json and --benchmark-save documents, as from the results log."""
        output_json["benchmarks"] = drop_unfinished(output_json.get("benchmarks") or [], self.started,
                                                    self.finished_nodeids)

    def pytest_terminal_summary(self, terminalreporter):
        for note in self.resume_notes:
            terminalreporter.write_line(f"moeperf resume: {note}")
        if self.resumed:
            everything = not (self.finished or self.failed or self.started)
            terminalreporter.write_line(
                f"moeperf resume: {'all ' if everything else ''}{len(self.resumed)} case(s) already finished in "
                f"{self.session.options.results_path}: {', '.join(self.resumed)}"
                + ("; nothing left to run" if everything else ""))
        if not (self.finished or self.failed):
            return
        from pytest_moeperf.results.summary import render_summary

        terminalreporter.write_sep("=", "moeperf deployment metrics")
        terminalreporter.write_line(render_summary(self.finished, self.failed))
        if self._session is not None:
            terminalreporter.write_line(f"results log: {self._session.options.results_path}")

    def pytest_sessionfinish(self, session):
        if self._session is not None:
            self._session.release()
        if self.resumed and session.exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
            session.exitstatus = pytest.ExitCode.OK  # a finished run resumed: done, not "no tests"


class _NoSpec:
    params: dict = {}


def _report_line(report) -> str:
    text = str(report.longrepr) if report.longrepr is not None else "failed"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith("E ") or "Failed:" in ln:
            return ln.removeprefix("E").strip()
    return lines[-1] if lines else "failed"


def _version() -> str:
    from pytest_moeperf import __version__

    return __version__


# --- fixtures -------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def moeperf(request):
    """The MoeperfSession: options, loaded model, GPU and results log."""
    return getattr(request.config, SESSION_KEY).session


@pytest.fixture
def moeperf_case(request):
    """The Case of this parametrized benchmark (parametrized indirectly by its id)."""
    return getattr(request.config, SESSION_KEY).cases_by_id[request.param]


@pytest.fixture
def moeperf_measure(moeperf, benchmark):
    """``moeperf_measure(case)`` measures a case through benchmark.pedantic and fills extra_info."""
    from pytest_moeperf.measure.session import CaseFailed

    def measure(case):
        def run_rounds(target, rounds, warmup_rounds):
            benchmark.pedantic(target, rounds=rounds, warmup_rounds=warmup_rounds, iterations=1)

        error = None
        try:
            info = moeperf.measure_case(case, run_rounds)
        except CaseFailed as exc:
            error = str(exc)
        if error is not None:  # outside the except: pytest shows the one line, not a chained second copy
            pytest.fail(error, pytrace=False)
        benchmark.extra_info.update(info)
        return info

    return measure


# --- several GPUs (issue 8) -------------------------------------------------------------------
# pytest-xdist with one worker per GPU and the merged JSON live in multigpu.py, a plugin of its
# own (hooks, --moeperf-gpus, --moeperf-merged-json); loading it imports no torch. docs/multigpu.md
pytest_plugins = ["pytest_moeperf.parallel.xdist_plugin", "pytest_moeperf.serving.plugin"]
