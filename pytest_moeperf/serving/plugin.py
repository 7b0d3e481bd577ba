"""pytest wiring of the serving benchmark (benchmarks/test_serving.py): options, parametrization
by model x load point, the results log, --moeperf-resume and the sweep's stop at saturation.

Loaded by pytest_moeperf.plugin.plugin; imports no torch (measurement lives in serving/runner.py).
"""

from __future__ import annotations

import os

import pytest

FIXTURE = "moeperf_serving_point"
STATE_KEY = "_moeperf_serving"


def pytest_addoption(parser):
    g = parser.getgroup("moeperf")
    add = g.addoption
    add("--moeperf-concurrency", metavar="USERS", default=None,
        help="serving: closed-loop users per load point, comma-separated (default 1,4 CPU; 1,2,4,...,64 GPU)")
    add("--moeperf-rate", metavar="REQ_PER_S", default=None,
        help="serving: open-loop arrival rates in requests/s, comma-separated (default none)")
    add("--moeperf-arrival", metavar="KIND", default=None, help="serving: poisson (seeded, default) or constant arrivals")
    add("--moeperf-requests", metavar="N", default=None,
        help="serving: requests per load point (default 4 per user, >= 8; open loop ~20 s of arrivals, 6 s on CPU)")
    add("--moeperf-warmup-requests", metavar="N", default=None, help="serving: untimed requests when an engine starts (default 4)")
    add("--moeperf-serving-lengths", metavar="IN/OUT", default=None,
        help="serving: input/output token lengths, each N, uniform:LO-HI or normal:MEAN,STD (default: "
             "--moeperf-contexts/--moeperf-new-tokens if given, else 128/16 CPU, 2048/64 GPU)")
    add("--moeperf-kv-block-size", metavar="TOKENS", default=None, help="serving: KV block size (default 32 CPU, transformers' 256 GPU)")
    add("--moeperf-kv-blocks", metavar="N", default=None, help="serving: KV blocks (default 512 CPU, sized from free memory on GPU)")
    add("--moeperf-max-batch-tokens", metavar="N", default=None, help="serving: tokens per engine step (default 512 CPU, inferred on GPU)")
    add("--moeperf-cuda-graphs", metavar="LIST", default=None, help="serving: auto, on, off, comma-separated: an axis (default auto)")
    add("--moeperf-cb-compile", metavar="LEVEL", default=None, help="serving: transformers' default_compile_level 0-3 (default 0)")
    add("--moeperf-prefix-sharing", action="store_true", default=False, help="serving: allow prefix caching (default off)")
    add("--moeperf-slo", metavar="SLO", action="append", default=[],
        help="serving: an SLO, a MLPerf preset (e.g. mlperf-llama2-70b-interactive) or ttft_ms=…,tpot_ms=…[,e2e_ms=…]; "
             "repeatable, the first is the gated one (default mlperf-llama2-70b-interactive)")
    add("--moeperf-sweep", metavar="MODE", default=None, help="serving: stop (skip loads beyond saturation, default) or full")
    add("--moeperf-point-timeout-s", metavar="S", default=None, help="serving: time limit of one load point (default 120 CPU, 600 GPU)")
    add("--moeperf-serving-records", metavar="PATH", default=None,
        help="serving: per-request records, JSON lines (default .moeperf/serving-records.jsonl)")


def _state(config) -> "ServingState":
    st = getattr(config, STATE_KEY, None)
    if st is None:
        st = ServingState(config)
        setattr(config, STATE_KEY, st)
        config.pluginmanager.register(st, "moeperf-serving-state")
    return st


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    _state(config)


class ServingState:
    def __init__(self, config):
        self.config = config
        self._options = None
        self._runner = None
        self.points: dict = {}
        self.sweeps: dict = {}  # family -> list of SweepPoint
        self.finished: list = []
        self.failed: list = []
        self.resumed: list = []
        self._usage_error = None

    @property
    def moeperf(self):
        return getattr(self.config, "_moeperf").session

    def options(self):
        if self._options is None:
            from .options import parse_serving_options

            try:
                endpoint = self.endpoint()
                label = None
                if endpoint is not None:
                    from .endpoint_runner import endpoint_label

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
    def runner(self):
        if self._runner is None:
            endpoint = self.endpoint()
            if endpoint is not None:  # an OpenAI-compatible server instead of the in-process engine
                from .endpoint_runner import EndpointRunner

                self._runner = EndpointRunner(self.moeperf, self.options(), endpoint)
            else:
                from .runner import ServingRunner

                self._runner = ServingRunner(self.moeperf, self.options())
        return self._runner

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
        except pytest.UsageError as exc:
            self._usage_error = self._usage_error or exc
            points = []
        self.points.update({p.point_id: p for p in points})
        ids = [p.point_id for p in points]
        metafunc.parametrize(FIXTURE, ids, ids=ids, indirect=True)

    def pytest_collection_finish(self, session):
        if self._usage_error is not None:
            raise self._usage_error

    def pytest_collection_modifyitems(self, session, config, items):
        if self.endpoint() is not None:  # the in-process generate() cases measure no server: not run
            local = [i for i in items if "moeperf_case" in getattr(i, "fixturenames", ())]
            if local:
                config.hook.pytest_deselected(items=local)
                items[:] = [i for i in items if i not in local]
        if not config.getoption("moeperf_resume", False) or not any(FIXTURE in getattr(i, "fixturenames", ()) for i in items):
            return
        from pytest_moeperf.results.results_log import finished_case_ids

        path = self.moeperf.options.results_path
        try:
            done = finished_case_ids(path, self.fingerprint()) if os.path.exists(path) else set()
        except (OSError, ValueError) as exc:
            raise pytest.UsageError(f"--moeperf-resume: cannot read {path}: {exc}") from None
        keep, skipped = [], []
        for item in items:
            spec = getattr(item, "callspec", None)
            pid = spec.params.get(FIXTURE) if spec is not None else None
            (skipped if pid in done else keep).append(item)
        if skipped:
            config.hook.pytest_deselected(items=skipped)
            items[:] = keep
            self.resumed = [i.callspec.params[FIXTURE] for i in skipped]

    def beyond_saturation(self, point) -> str | None:
        from .sweep import knee, saturation_index

        if self.options().sweep != "stop":
            return None
        done = self.sweeps.get(point.family, [])
        i = saturation_index(done)
        if i is None or point.load.value <= sorted(done, key=lambda p: p.load)[i].load:
            return None
        k = knee(done)
        return (f"beyond saturation (knee at {k.load:g}, {k.output_tokens_per_s:.4g} tokens/s)" if k else
                "beyond saturation (the lowest load already saturated or failed)")

    def record(self, point, info: dict | None) -> None:
        from .sweep import SweepPoint

        self.sweeps.setdefault(point.family, []).append(
            SweepPoint(point.load.value, info and info.get("output_tokens_per_s"), info and info.get("req_ttft_ms_p50")))

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        spec = getattr(item, "callspec", None)
        if call.when != "call" or spec is None or FIXTURE not in spec.params:
            return
        report = outcome.get_result()
        point = self.points[spec.params[FIXTURE]]
        log = self.moeperf.log
        if not getattr(self, "_log_started", False):
            log.session_started(getattr(self.config, "_moeperf").machine_info_extra())
            self._log_started = True
        fixture = getattr(item, "funcargs", {}).get("benchmark")
        if report.passed and fixture is not None and getattr(fixture, "stats", None) is not None:
            bench = fixture.stats.as_dict(include_data=True)
            saved, log.fingerprint = log.fingerprint, self.fingerprint()
            try:
                log.case_finished(bench)
            finally:
                log.fingerprint = saved
            self.finished.append((point, bench["extra_info"]))
        elif report.failed:
            from pytest_moeperf.plugin.plugin import _report_line

            error = _report_line(report)
            log.case_failed(item.nodeid, point.point_id, error)
            self.failed.append((point, error))
            self.record(point, None)

    def pytest_terminal_summary(self, terminalreporter):
        if self.resumed:
            terminalreporter.write_line(f"moeperf resume: {len(self.resumed)} serving point(s) already finished")
        if not (self.finished or self.failed):
            return
        from .summary import render_serving_summary

        terminalreporter.write_sep("=", "moeperf serving metrics")
        terminalreporter.write_line(render_serving_summary(self.finished, self.failed, self.sweeps))

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session):
        if self._runner is not None:
            self._runner.close()


@pytest.fixture
def moeperf_serving_point(request):
    """The ServingPoint of this parametrized benchmark (parametrized indirectly by its id)."""
    return _state(request.config).points[request.param]


@pytest.fixture
def moeperf_serve(moeperf, benchmark, request):
    """``moeperf_serve(point)`` runs one load point through benchmark.pedantic and fills extra_info."""
    from .runner import ServingPointFailed

    state = _state(request.config)

    def serve(point):
        why = state.beyond_saturation(point)
        if why:
            pytest.skip(why)

        def run_once(target):
            benchmark.pedantic(target, rounds=1, iterations=1, warmup_rounds=0)

        try:
            info = state.runner.measure(point, run_once)
        except ServingPointFailed as exc:
            pytest.fail(f"{point.point_id}: {exc}", pytrace=False)
        benchmark.extra_info.update(info)
        state.record(point, info)
        return info

    return serve
