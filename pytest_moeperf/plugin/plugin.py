"""The pytest plugin: options, hooks and tiny fixtures. Measurement lives elsewhere.

Loading this module imports neither torch, transformers nor pynvml (a test proves it):
they load when the first benchmark case is collected or measured.
"""

from __future__ import annotations

import os
import sys

import pytest

from pytest_moeperf.plugin.assert_rewrite import leave_package_unrewritten

leave_package_unrewritten()  # before the package's other modules load: they import as compiled, not rewritten

from pytest_moeperf import __version__  # noqa: E402
from pytest_moeperf.gate import config as gate_config  # noqa: E402
from pytest_moeperf.measure import run_options  # noqa: E402
from pytest_moeperf.measure.run_options import GPU_KINDS, parse_options  # noqa: E402
from pytest_moeperf.results import bench_api  # noqa: E402
from pytest_moeperf.results.kinds import BenchmarkKind  # noqa: E402
from pytest_moeperf.results.outputs import check_run_outputs  # noqa: E402
from pytest_moeperf.serving import endpoint  # noqa: E402

SESSION_KEY = "_moeperf"


def pytest_addhooks(pluginmanager):
    from pytest_moeperf.plugin import hookspec

    pluginmanager.add_hookspecs(hookspec)


# the "moeperf" option group of the newest parser (every module of the plugin adds to it)
_OPTION_GROUP = None


def moeperf_options_given(config) -> list[str]:
    """The moeperf options whose value is not their default (given on the command line, in
    PYTEST_ADDOPTS or in addopts): a session given none and collecting no moeperf benchmark
    leaves the gate and the benchmark storage alone."""
    group = _OPTION_GROUP
    return [arg.names()[0] for arg in (group.options if group is not None else ())
            if config.getoption(arg.dest, None) != getattr(arg, "default", None)]


def pytest_addoption(parser, pluginmanager):
    global _OPTION_GROUP
    bench_api.defer_json_open(parser, pluginmanager)  # pytest-benchmark 5.2 emptied --benchmark-json's file at parse time
    g = parser.getgroup("moeperf", "pytest-moeperf: deployment benchmarks of MoE and dense LLMs")
    _OPTION_GROUP = g
    # each setting declares its own options (pytest-benchmark's add_*_options, vLLM's add_cli_args)
    run_options.add_options(g.addoption)
    gate_config.add_options(g.addoption)
    endpoint.add_options(g.addoption)


def _getter(config):
    return lambda name: config.getoption(name, None)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    config.addinivalue_line("markers", "moeperf: a benchmark the moeperf gate judges (the suite's own cases are "
                                       "implicitly; a session with none leaves the gate and the storage alone)")
    get = _getter(config)
    options = None  # a session given no moeperf option: the defaults are valid, nothing to parse or check here
    if moeperf_options_given(config):
        gpu = (get("moeperf_gpu") or "auto").lower()
        try:
            # Validate every value now, without torch: a GPU kind is checked through NVML below; with
            # auto the CPU defaults are the laxer ones (fewer new tokens, 4096-position presets), so no
            # valid run is refused here; GPU-only limits are checked at collection (options()).
            options = parse_options(get, cuda_available=gpu in GPU_KINDS)
            gpu = options.gpu
            endpoint.parse_endpoint(get)  # pure: no httpx
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
        from pytest_moeperf.results.outputs import check_output_folder

        try:  # a file, or a folder under a file: said now, not when the first static case compiles
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = check_output_folder("--moeperf-compile-cache", cache)
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None
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
    config.pluginmanager.register(GatePlugin(config, eager=bool(moeperf_options_given(config))), "moeperf-gate")


class MoeperfState:
    """Per-pytest-session wiring around a MoeperfSession (created on first use)."""

    def __init__(self, config):
        self.config = config
        self._session = None
        self._log_started = False
        self.cases_by_id: dict = {}  # case id -> Case, filled at parametrization
        # the single-request cases as a kind of benchmark (results/kinds.py; serving points are the other)
        self.cases = BenchmarkKind(config, "moeperf_case", self.cases_by_id.__getitem__, self.log_case,
                                   lambda nodeid, case_id, error: self.session.log.case_failed(nodeid, case_id, error))
        self.finished, self.failed = self.cases.finished, self.cases.failed  # (case, extra_info), (case, error)
        self.started = self.cases.started  # nodeids of cases whose rounds began in this process
        self.resumed: list[str] = []  # case ids skipped by --moeperf-resume
        self.resume_notes: list[str] = []  # why logged cases were not skipped, torn lines ...
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
            log.on_write_error = self._stop_run
            self._session = MoeperfSession(options, log=log)
            if self.progress is not None:
                self._session.progress = self.progress
        return self._session

    def pytest_sessionstart(self, session):
        self.pytest_session = session

    def _stop_run(self, error: OSError) -> bool:
        """The results log cannot be appended to (a full disk): stop the run after this test, in one
        line, rather than measure cases that could not be kept; the session ends as after -x
        (pytest-benchmark's JSON, the summaries), so every finished case is kept."""
        session = getattr(self, "pytest_session", None)
        if session is None:
            return False
        session.shouldstop = (f"{error}: the run stops here; the cases finished before are in the log (and in "
                              f"--benchmark-json if given); free space, then rerun with --moeperf-resume")
        return True

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
        info = {"moeperf_version": __version__}
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
            from pytest_moeperf.device.gpu import identity_or_none

            info["gpu"] = identity_or_none()
        return info

    def log_case(self, bench: dict, fingerprint: str | None = None) -> None:
        """Append a finished benchmark (a session record first); ``fingerprint``: another kind's own
        (a serving point's settings differ from the cases')."""
        self.log_started()
        log = self.session.log
        saved, log.fingerprint = log.fingerprint, fingerprint or log.fingerprint
        try:
            log.case_finished(bench)
        finally:
            log.fingerprint = saved

    def log_started(self) -> None:
        if not self._log_started:
            self.session.log.session_started(self.machine_info_extra())
            self._log_started = True

    # --- hooks ----------------------------------------------------------------------------
    def pytest_generate_tests(self, metafunc):
        if "moeperf_case" not in metafunc.fixturenames:
            return
        try:
            why = bench_api.incompatible_installed()  # a pair that cannot run a benchmark stops here
            if why:
                raise pytest.UsageError(why)
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
        try:
            run_options.check_unique_cases(cases)
            for case in cases:
                run_options.check_case(case)
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
        self.cases.reported(item, call, outcome.get_result())

    def pytest_runtest_call(self, item):
        self.cases.call_started(item)

    def pytest_benchmark_update_machine_info(self, config, machine_info):
        machine_info.update(self.machine_info_extra())

    def pytest_benchmark_update_json(self, config, benchmarks, output_json):
        """A case cut short (Ctrl-C mid-rounds) has stats but never finished: drop it from the
        --benchmark-json and --benchmark-save documents, as from the results log."""
        self.cases.drop_unfinished(output_json)

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
# pytest-xdist with one worker per GPU and the merged JSON live in parallel/xdist_plugin.py, a plugin of its
# own (hooks, --moeperf-gpus, --moeperf-merged-json); loading it imports no torch. docs/multigpu.md
pytest_plugins = ["pytest_moeperf.parallel.xdist_plugin", "pytest_moeperf.serving.plugin"]
