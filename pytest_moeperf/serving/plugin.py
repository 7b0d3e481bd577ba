"""pytest wiring of the serving benchmark (benchmarks/test_serving.py): options, parametrization
by model x load point, the results log, --moeperf-resume and the sweep's stop at saturation.

Loaded by pytest_moeperf.plugin.plugin; imports no torch (measurement lives in serving/runner.py).
"""

from __future__ import annotations


import pytest

from pytest_moeperf.results.kinds import BenchmarkKind

FIXTURE = "moeperf_serving_point"
STATE_KEY = "_moeperf_serving"


def pytest_addoption(parser):
    from pytest_moeperf.serving.options import add_options  # ServingOptions declares its own options

    add_options(parser.getgroup("moeperf").addoption)


def _state(config) -> "ServingState":
    st = getattr(config, STATE_KEY, None)
    if st is None:
        st = ServingState(config)
        setattr(config, STATE_KEY, st)
        config.pluginmanager.register(st, "moeperf-serving-state")
    return st


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    state = _state(config)
    progress = getattr(getattr(config, "_moeperf", None), "progress", None)
    if progress is not None:  # the suite's progress lines count serving points too
        progress.track_cases(state.point_of)


class ServingState:
    def __init__(self, config):
        self.config = config
        self._options = None
        self._runner = None
        self._sweep = None
        self.points: dict = {}
        self.resumed: list = []
        self.resume_notes: list[str] = []
        # serving load points as a kind of benchmark of the plugin session (results/kinds.py)
        self.kind = BenchmarkKind(config, FIXTURE, lambda pid: self.points[pid],
                                  lambda bench: self.moeperf_state.log_case(bench, fingerprint=self.fingerprint()),
                                  self._log_failed)
        self.finished, self.failed, self.started = self.kind.finished, self.kind.failed, self.kind.started
        self._usage_error = None

    @property
    def moeperf_state(self):
        return getattr(self.config, "_moeperf")

    @property
    def moeperf(self):
        return self.moeperf_state.session

    def _log_failed(self, nodeid: str, point_id: str, error: str) -> None:
        self.moeperf_state.log_started()  # a session record before the point's, as before a finished one
        self.moeperf.log.case_failed(nodeid, point_id, error)

    def options(self):
        if self._options is None:
            from .options import parse_serving_options

            try:
                endpoint = self.endpoint()
                label = None
                if endpoint is not None:
                    from .endpoint_target import endpoint_label

                    label = endpoint_label(endpoint.model)
                self._options = parse_serving_options(lambda n: self.config.getoption(n, None), self.moeperf.options,
                                                      endpoint_model=label)
            except ValueError as exc:
                raise pytest.UsageError(str(exc)) from None
        return self._options

    def endpoint(self):
        """The --moeperf-endpoint settings (already validated at configure), or None."""
        from .endpoint import parse_endpoint

        return parse_endpoint(lambda n: self.config.getoption(n, None))

    @property
    def sweep(self):
        if self._sweep is None:
            from .sweep import Sweep

            self._sweep = Sweep(self.options().points, stop=self.options().sweep == "stop")
        return self._sweep

    @property
    def runner(self):
        """One point runner; what varies is its target: an OpenAI-compatible server (--moeperf-endpoint)
        or the in-process engine."""
        if self._runner is None:
            from .runner import ServingRunner

            endpoint = self.endpoint()
            if endpoint is not None:
                from .endpoint_target import EndpointTarget

                target = EndpointTarget(self.options(), endpoint)
            else:
                from .engine_target import EngineTarget

                target = EngineTarget(self.moeperf, self.options(), self.sweep)
            self._runner = ServingRunner(target, self.options())
        return self._runner

    def point_of(self, item):
        """The ServingPoint a collected item measures, or None for other tests."""
        spec = getattr(item, "callspec", None)
        pid = spec.params.get(FIXTURE) if spec is not None else None
        return self.points.get(pid) if pid is not None else None

    def fingerprint(self) -> str:
        import dataclasses
        import hashlib
        import json

        from pytest_moeperf.results.results_log import options_fingerprint

        o = self.options()
        blob = json.dumps({"base": options_fingerprint(self.moeperf.options), "requests": o.requests,
                           "engine": dataclasses.asdict(o.engine), "warm": o.warmup_requests,
                           "slo": o.primary_slo.as_dict(),
                           "endpoint": dataclasses.asdict(self.endpoint()) if self.endpoint() else None},
                          sort_keys=True, default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]

    # --- hooks ------------------------------------------------------------------------------
    def pytest_generate_tests(self, metafunc):
        if FIXTURE not in metafunc.fixturenames:
            return
        try:
            points = list(self.options().points)
            if self.endpoint() is None:
                self._check_inputs(points)
        except pytest.UsageError as exc:
            self._usage_error = self._usage_error or exc
            points = []
        self.points.update({p.point_id: p for p in points})
        ids = [p.point_id for p in points]
        metafunc.parametrize(FIXTURE, ids, ids=ids, indirect=True)

    def pytest_collection_finish(self, session):
        if self._usage_error is not None:
            raise self._usage_error

    def _check_inputs(self, points) -> None:
        """Each model's shortest drawn prompt fits its chat template (as the deployment cases' contexts
        are checked), before any model loads: one line naming --moeperf-serving-lengths."""
        from pytest_moeperf.model.context import ContextError, build_exact_context
        from pytest_moeperf.model.presets import get_preset
        from pytest_moeperf.model.tokenizer import get_tokenizer

        from .options import smallest_drawn

        smallest: dict[str, tuple[int, object]] = {}
        for p in points:
            low = smallest_drawn(self.options(), p)[0]
            if p.model not in smallest or low < smallest[p.model][0]:
                smallest[p.model] = (low, p.input_len)
        for model, (low, spec) in smallest.items():
            preset = get_preset(model)
            try:
                tok = get_tokenizer(preset.family, preset.vocab_size, self.moeperf.options.checkpoint_for(model))
                build_exact_context(tok, low)
            except (ContextError, ValueError) as exc:
                raise pytest.UsageError(f"--moeperf-serving-lengths: input {spec} draws a {low}-token prompt for "
                                        f"{model}: {exc}") from None

    def pytest_collection_modifyitems(self, session, config, items):
        if self.endpoint() is not None:  # the in-process generate() cases measure no server: not run
            local = [i for i in items if "moeperf_case" in getattr(i, "fixturenames", ())]
            if local:
                config.hook.pytest_deselected(items=local)
                items[:] = [i for i in items if i not in local]
        serving = any(FIXTURE in getattr(i, "fixturenames", ()) for i in items)
        if serving and self._usage_error is None and not hasattr(config, "workerinput"):
            from pytest_moeperf.results.outputs import check_run_outputs

            try:  # every output, the request records included, before any model loads
                check_run_outputs(lambda n: config.getoption(n, None), self.moeperf.options, serving=True)
            except ValueError as exc:
                raise pytest.UsageError(str(exc)) from None
        if not config.getoption("moeperf_resume", False) or not serving:
            return
        from pytest_moeperf.results.documents import SERVING
        from pytest_moeperf.results.results_log import resume_plan_for

        path = self.moeperf.options.results_path
        try:  # the deployment cases' plan, for this kind under its own fingerprint
            done, notes = resume_plan_for(path, self.fingerprint(), SERVING)
        except (OSError, ValueError) as exc:
            raise pytest.UsageError(f"--moeperf-resume: cannot read {path}: {exc}") from None
        # a missing log and torn lines are said once, by the cases' plan (plugin.py)
        self.resume_notes = [n for n in notes if "measured again" in n]
        keep, skipped = [], []
        for item in items:
            spec = getattr(item, "callspec", None)
            pid = spec.params.get(FIXTURE) if spec is not None else None
            (skipped if pid in done else keep).append(item)
        if skipped:
            config.hook.pytest_deselected(items=skipped)
            items[:] = keep
            self.resumed = [i.callspec.params[FIXTURE] for i in skipped]

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        done = self.kind.reported(item, call, outcome.get_result())
        if done is not None and done[1] is not None:
            self.sweep.record(done[0], None)  # a failed point counts as saturated

    def pytest_runtest_call(self, item):
        self.kind.call_started(item)

    def pytest_benchmark_update_json(self, config, benchmarks, output_json):
        self.kind.drop_unfinished(output_json)

    def pytest_terminal_summary(self, terminalreporter):
        for note in self.resume_notes:
            terminalreporter.write_line(f"moeperf resume: {note}")
        if self.resumed:
            everything = not (self.finished or self.failed or self.started)
            terminalreporter.write_line(
                f"moeperf resume: {'all ' if everything else ''}{len(self.resumed)} serving point(s) already finished "
                f"in {self.moeperf.options.results_path}: {', '.join(self.resumed)}" + ("; nothing left to run" if everything else ""))
        if not (self.finished or self.failed):
            return
        from .summary import render_serving_summary

        terminalreporter.write_sep("=", "moeperf serving metrics")
        terminalreporter.write_line(render_serving_summary(self.finished, self.failed, self.sweep.done))

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session):
        if self._runner is not None:  # Ctrl-C included: the engine stops before its event loop closes
            self._runner.close()
        if self.resumed and session.exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
            session.exitstatus = pytest.ExitCode.OK  # a finished sweep resumed: done, not "no tests"


@pytest.fixture
def moeperf_serving_point(request):
    """The ServingPoint of this parametrized benchmark (parametrized indirectly by its id)."""
    return _state(request.config).points[request.param]


@pytest.fixture
def moeperf_serve(moeperf, benchmark, request):
    """``moeperf_serve(point)`` runs one load point through benchmark.pedantic and fills extra_info."""
    from pytest_moeperf.results.outputs import drop_unfinished_fixture

    from .runner import ServingPointFailed

    state = _state(request.config)

    def serve(point):
        why = state.sweep.beyond_saturation(point)
        if why:
            pytest.skip(why)

        def run_once(target):
            benchmark.pedantic(target, rounds=1, iterations=1, warmup_rounds=0)

        error = None
        try:
            info = state.runner.measure(point, run_once)
        except ServingPointFailed as exc:
            error = f"{point.point_id}: {exc}"
        except BaseException:  # Ctrl-C mid-load: the point has no round; pytest-benchmark must not summarise it
            drop_unfinished_fixture(benchmark)
            raise
        if error is not None:  # outside the except: pytest shows the one line, not a chained second copy
            pytest.fail(error, pytrace=False)
        benchmark.extra_info.update(info)
        state.sweep.record(point, info)
        return info

    return serve
