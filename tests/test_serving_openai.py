"""The OpenAI-compatible endpoint backend: pure protocol parsing, option parsing, and every fault
against a real socket (a closed port, a stub server on loopback, a stub process killed mid-stream)
or the real ``transformers serve`` (session fixture in conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_moeperf.serving.backend import BackendError, ServingRequest
from pytest_moeperf.serving.chat_prompts import attach_prompts
from pytest_moeperf.serving.endpoint import EndpointConfig, check_base_url, parse_endpoint
from pytest_moeperf.serving.openai_backend import OpenAIBackend, eos_fields
from pytest_moeperf.serving.openai_stream import SseReader, StreamProtocolError, TokenTally, parse_event


# ---- pure parsing ----

@given(st.lists(st.lists(st.text(alphabet=st.characters(blacklist_characters="\r\n"), max_size=20),
                         min_size=1, max_size=3), max_size=5))
def test_sse_reader_returns_each_event_data(events):
    reader, got = SseReader(), []
    for lines in events:
        for line in [": keep-alive", "event: message"] + [f"data: {x}" for x in lines] + [""]:
            data = reader.feed(line)
            if data is not None:
                got.append(data)
    assert got == ["\n".join(lines) for lines in events]
    assert reader.flush() is None


def test_parse_event_chat_completions_done_and_errors():
    ev = parse_event('{"model": "m", "choices": [{"delta": {"role": "assistant"}}]}', "chat")
    assert not ev.content_bearing and ev.model == "m"
    ev = parse_event('{"choices": [{"delta": {"content": "hi"}, "finish_reason": null}]}', "chat")
    assert ev.text == "hi" and ev.content_bearing
    ev = parse_event('{"choices": [{"text": "", "finish_reason": "length"}],'
                     ' "usage": {"prompt_tokens": 5, "completion_tokens": 7}}', "completions")
    assert (ev.finish_reason, ev.prompt_tokens, ev.completion_tokens, ev.content_bearing) == ("length", 5, 7, False)
    assert parse_event("[DONE]", "chat").done
    with pytest.raises(StreamProtocolError, match="server error mid-stream: boom"):
        parse_event('{"error": "boom"}', "chat")
    with pytest.raises(StreamProtocolError, match="not a JSON stream event"):
        parse_event("<html>", "chat")


def test_token_tally_one_per_chunk_unless_usage_runs_along():
    plain = TokenTally()
    counts = [plain.add(parse_event(d, "chat")) for d in (
        '{"choices": [{"delta": {"role": "assistant"}}]}',
        '{"choices": [{"delta": {"content": "ab"}}]}',
        '{"choices": [{"delta": {"content": "c"}}]}',
        '{"choices": [{"delta": {}, "finish_reason": "length"}], "usage": {"prompt_tokens": 4, "completion_tokens": 3}}')]
    assert counts == [0, 1, 1, 0] and (plain.chunks, plain.completion_tokens, plain.prompt_tokens) == (2, 3, 4)
    running = TokenTally()  # vLLM continuous_usage_stats: a cumulative count in every chunk
    counts = [running.add(parse_event('{"choices": [{"delta": {"content": "x"}}], "usage": {"completion_tokens": %d}}'
                                      % n, "chat")) for n in (1, 3, 4)]
    assert counts == [1, 2, 1] and running.counted == 4


def test_eos_fields_per_server_kind():
    assert eos_fields("ignore_eos", 8) == {"ignore_eos": True}
    assert '"eos_token_id": -1' in eos_fields("generation_config", 8)["generation_config"]
    assert eos_fields("none", 8) == {}


# ---- options ----

def _get(**values):
    return lambda name: values.get(name)


def test_parse_endpoint_defaults_and_one_line_errors():
    assert parse_endpoint(_get()) is None
    cfg = parse_endpoint(_get(moeperf_endpoint="http://127.0.0.1:8000/v1/", moeperf_endpoint_model="m",
                              moeperf_endpoint_timeout_s="2.5", moeperf_endpoint_gpu_index="1"))
    assert (cfg.base_url, cfg.model, cfg.api, cfg.request_timeout_s, cfg.energy_gpu) == (
        "http://127.0.0.1:8000/v1", "m", "chat", 2.5, 1)
    assert cfg.origin == "http://127.0.0.1:8000" and cfg.client_workers == 1
    bad = [({"moeperf_endpoint_model": "m"}, "needs --moeperf-endpoint URL"),
           ({"moeperf_endpoint": "http://127.0.0.1:8000/v1"}, "needs --moeperf-endpoint-model"),
           ({"moeperf_endpoint": "127.0.0.1:8000", "moeperf_endpoint_model": "m"}, "not an http"),
           ({"moeperf_endpoint": "http://h:99999/v1", "moeperf_endpoint_model": "m"}, "not a URL"),
           ({"moeperf_endpoint": "http://h/v1", "moeperf_endpoint_model": "m", "moeperf_endpoint_api": "x"}, "chat"),
           ({"moeperf_endpoint": "http://h/v1", "moeperf_endpoint_model": "m", "moeperf_endpoint_timeout_s": "0"},
            "--moeperf-endpoint-timeout-s: 0 must be > 0"),
           ({"moeperf_endpoint": "http://h/v1", "moeperf_endpoint_model": "m", "moeperf_endpoint_gpu_index": "a"},
            "NVML index"),
           ({"moeperf_client_workers": "2"}, "--moeperf-client-workers needs --moeperf-endpoint URL"),
           ({"moeperf_endpoint": "http://h/v1", "moeperf_endpoint_model": "m", "moeperf_client_workers": "0"},
            "--moeperf-client-workers: 0 is below the minimum of 1")]
    for values, message in bad:
        with pytest.raises(ValueError, match=message) as err:
            parse_endpoint(_get(**values))
        assert "\n" not in str(err.value)
    assert check_base_url(" https://example.test/v1 ") == "https://example.test/v1"


# ---- helpers for the socket tests ----

def _request(n=4, prompt_len=3) -> ServingRequest:
    return ServingRequest("r0", tuple(range(1, prompt_len + 1)), n, prompt_text="hi",
                          messages=({"role": "user", "content": "hi"},))


async def _collect(backend, request):
    return [item async for item in backend.stream(request)]


class FakeClock:
    """Time for the readiness loop: advances only when the backend sleeps (no wall-clock waits)."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    async def sleep(self, seconds):
        self.now += seconds
        await asyncio.sleep(0)


async def _with_stub(mode, body, **cfg):
    from sse_stub_server import serve

    server = await serve(mode)
    port = server.sockets[0].getsockname()[1]
    clock = FakeClock()
    backend = OpenAIBackend(EndpointConfig(f"http://127.0.0.1:{port}/v1", "stub", **cfg), clock=clock,
                            sleep=clock.sleep)
    try:
        return await body(backend)
    finally:
        await backend.close()
        server.close()
        await server.wait_closed()


def _closed_port() -> int:
    from transformers_server import free_port

    return free_port()  # nothing listens there once the probe socket is closed


# ---- prompts ----

def _tokenizer(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def _exact_request(tokenizer, context: int, n: int, rid="q") -> ServingRequest:
    """A workload's request: exact post-template ids (context.py), then the text and messages forms."""
    from pytest_moeperf.model.context import build_exact_context

    ids = build_exact_context(tokenizer, context, seed=context).input_ids
    (request,) = attach_prompts([ServingRequest(rid, tuple(ids), n)], tokenizer)
    return request


@pytest.mark.parametrize("model", ["tiny-dense", "tiny-moe"])
def test_attach_prompts_recovers_text_and_messages_of_exact_contexts(model):
    from pytest_moeperf.model.presets import get_preset
    from pytest_moeperf.model.tokenizer import build_offline_tokenizer

    preset = get_preset(model)
    tokenizer = build_offline_tokenizer(preset.family, preset.vocab_size)
    for context in (70, 97):
        request = _exact_request(tokenizer, context, 4)
        assert len(request.prompt_ids) == context
        assert tokenizer(request.prompt_text, add_special_tokens=False)["input_ids"] == list(request.prompt_ids)
        rendered = tokenizer.apply_chat_template(list(request.messages), add_generation_prompt=True, tokenize=False)
        assert tokenizer(rendered, add_special_tokens=False)["input_ids"] == list(request.prompt_ids)
    bare = ServingRequest("b", (1, 2, 3), 4, prompt_text="given", messages=({"role": "user", "content": "x"},))
    assert attach_prompts([bare], tokenizer) == [bare]  # forms already given are kept


@pytest.mark.e2e
def test_bad_endpoint_options_are_one_line_usage_errors(pytester):
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--co", "-p", "no:cacheprovider", "--moeperf-endpoint", "127.0.0.1:8000",
                                "--moeperf-endpoint-model", "m")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --moeperf-endpoint: '127.0.0.1:8000' is not an http(s) URL with a host; "
                                 "give the server's OpenAI base URL, e.g. http://127.0.0.1:8000/v1"])
    assert "Traceback" not in result.stderr.str()
    result = pytester.runpytest("--co", "-p", "no:cacheprovider", "--moeperf-endpoint-model", "m")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --moeperf-endpoint-model needs --moeperf-endpoint URL"])


def test_endpoint_labels_and_the_tokenizer_it_needs(tmp_path):
    from pytest_moeperf.serving.endpoint_target import endpoint_label, load_tokenizer
    from pytest_moeperf.serving.runner import ServingPointFailed

    assert endpoint_label("/srv/models/tiny-dense/") == "http-tiny-dense"
    assert endpoint_label("Qwen/Qwen3-32B") == "http-Qwen3-32B"
    assert endpoint_label("a b:c") == "http-a_b_c"
    with pytest.raises(ServingPointFailed, match="give --moeperf-endpoint-tokenizer PATH"):
        load_tokenizer(EndpointConfig("http://127.0.0.1:1/v1", "not-a-folder"))
    with pytest.raises(ServingPointFailed, match="--moeperf-endpoint-tokenizer: cannot load"):
        load_tokenizer(EndpointConfig("http://127.0.0.1:1/v1", "m", tokenizer=str(tmp_path)))


# ---- several client processes (client_workers.py) ----

@given(st.sampled_from(["concurrency", "constant", "poisson"]), st.integers(1, 64), st.integers(1, 200),
       st.integers(1, 8))
def test_worker_plan_splits_requests_users_and_one_schedule(mode, value, n, workers):
    from pytest_moeperf.serving.client_workers import plan
    from pytest_moeperf.serving.load_point import LoadPoint
    from pytest_moeperf.serving.loadgen import arrival_times

    point = LoadPoint(mode, float(value) if mode != "concurrency" else value)
    shares = plan(point, n, workers, seed=5)
    assert sorted(i for s in shares for i in s["indices"]) == list(range(n))
    assert 1 <= len(shares) <= workers and all(s["indices"] for s in shares)
    if point.closed_loop:
        assert sum(s["users"] for s in shares) == min(value, n) and all(s["users"] >= 1 for s in shares)
        firsts = [s["first_user"] for s in shares]
        assert firsts == [sum(s["users"] for s in shares[:k]) for k in range(len(shares))]
    else:
        due = arrival_times(point, n, seed=5)
        assert all(s["schedule"] == [due[i] for i in s["indices"]] for s in shares)


@contextlib.contextmanager
def _stub_in_thread(mode):
    """tests/sse_stub_server.py in MODE in a thread of its own event loop; yields the base URL."""
    import threading

    from sse_stub_server import serve

    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(serve(mode))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    async def shutdown():  # the stub's own connections end before its loop does
        server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
    finally:
        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


@pytest.fixture
def fast_stub_url():
    with _stub_in_thread("fast") as url:
        yield url


def _started_backend(url, workers=1):
    backend = OpenAIBackend(EndpointConfig(url, "stub", eos_field="none", client_workers=workers))

    async def start():
        await backend.start()
        await backend.close()  # the parent's probe only: each process opens its own client
    asyncio.run(start())
    return backend


@pytest.mark.e2e
@pytest.mark.parametrize("mode,value", [("concurrency", 4), ("constant", 400.0)], ids=["closed", "open"])
def test_two_client_processes_send_one_schedule_and_return_every_record(fast_stub_url, mode, value):
    from pytest_moeperf.serving.client_workers import run_point
    from pytest_moeperf.serving.load_point import LoadPoint
    from pytest_moeperf.serving.loadgen import arrival_times

    backend = _started_backend(fast_stub_url, workers=2)  # --moeperf-client-workers 2
    reqs = [ServingRequest(f"r{i}", (1, 2, 3), 5, prompt_text="hi", messages=({"role": "user", "content": "hi"},))
            for i in range(40)]
    point = LoadPoint(mode, value)
    run = asyncio.run(run_point(backend, reqs, point, timeout_s=60))  # what the runner calls
    assert [r.request_id for r in run.records] == [r.request_id for r in reqs]
    assert all(r.ok and r.output_tokens == 5 and len(r.chunk_times_s) == 5 for r in run.records), run.records[0]
    assert run.client["workers"] == 2 and run.client["cpu_s"] > 0
    assert run.duration_s == max(r.end_s for r in run.records)
    if point.closed_loop:
        assert {r.user for r in run.records} == {0, 1, 2, 3} and run.offered_rate_per_s is None
    else:  # one schedule over both processes, on one time axis: no send before its arrival time
        assert [r.scheduled_s for r in run.records] == pytest.approx(arrival_times(point, 40, seed=0))
        assert all(r.sent_s >= r.scheduled_s - 1e-6 for r in run.records)
        assert run.offered_rate_per_s == pytest.approx(40 / max(r.sent_s for r in run.records), rel=0.01)


def test_a_client_process_that_dies_leaves_its_requests_failed_and_keeps_the_others():
    from pytest_moeperf.serving.client_workers import _merge, plan
    from pytest_moeperf.serving.load_point import LoadPoint
    from pytest_moeperf.serving.loadgen import RequestRecord

    point = LoadPoint("constant", 10.0)
    reqs = [_request() for _ in range(5)]
    reqs = [ServingRequest(f"r{i}", r.prompt_ids, r.max_new_tokens) for i, r in enumerate(reqs)]
    shares = plan(point, 5, 2)
    done = [RequestRecord(f"r{i}", None, 3, 4, t, t, t + 0.1, (t + 0.1,), (4,), t + 0.1, 4)
            for i, t in zip(shares[0]["indices"], shares[0]["schedule"])]
    results = [("ok", done, {"cpu_s": 0.1, "wall_s": 1.0, "loop_lag_s": [0.001]}, 0.5),
               ("error", "the client process ended without its records")]
    run = _merge(point, reqs, shares, results, origin=100.0)
    assert [r.request_id for r in run.records] == [f"r{i}" for i in range(5)]
    assert [r.ok for r in run.records] == [True, False, True, False, True]
    assert {r.error for r in run.records if not r.ok} == {"the client process ended without its records"}
    assert run.duration_s == max(r.end_s for r in run.records) and run.client["workers"] == 2
    with pytest.raises(BackendError, match="every client process failed: boom"):
        _merge(point, reqs, shares, [("error", "boom"), ("error", "boom")], origin=100.0)


def test_merged_client_processes_offer_the_rate_one_process_would_compute_over_their_sends():
    """--moeperf-client-workers > 1: the point's offered rate is loadgen.offered_rate (the single-process
    formula: requests sent / the last send's time) over every process's sends, not None; a closed loop has none."""
    from pytest_moeperf.serving.client_workers import _merge, plan
    from pytest_moeperf.serving.load_point import LoadPoint
    from pytest_moeperf.serving.loadgen import RequestRecord, offered_rate

    reqs = [ServingRequest(f"r{i}", (1, 2, 3), 4) for i in range(5)]
    for point in (LoadPoint("concurrency", 2), LoadPoint("constant", 10.0)):  # the open loop last: reused below
        shares = plan(point, 5, 2)
        sends = {0: [0.0, 0.2, 0.4], 1: [0.1, 0.5]}  # each process's send times after the shared origin
        results = []
        for w, share in enumerate(shares):
            recs = [RequestRecord(f"r{i}", None if share["users"] is None else 0, 3, 4, t, t, t + 0.1, (t + 0.1,), (4,),
                                  t + 0.1, 4) for i, t in zip(share["indices"], sends[w])]
            results.append(("ok", recs, {"cpu_s": 0.1, "wall_s": 1.0, "sends": len(sends[w]),
                                         "last_send_s": max(sends[w])}, 0.6))
        run = _merge(point, reqs, shares, results, origin=100.0)
        merged = sorted(sends[0] + sends[1])
        assert run.offered_rate_per_s == offered_rate(point, len(merged), merged[-1])
        if point.closed_loop:
            assert run.offered_rate_per_s is None
        else:
            assert run.offered_rate_per_s == pytest.approx(5 / 0.5)
    # a process that died (open loop): the rate is over the sends the surviving processes report
    run = _merge(point, reqs, shares, [results[0], ("error", "gone")], origin=100.0)
    assert run.offered_rate_per_s == pytest.approx(3 / 0.4)


@pytest.mark.e2e
def test_a_cancelled_point_ends_its_client_processes():
    """Ctrl-C or the point's limit cancels the task awaiting run_point: its processes are ended, none
    is left behind, whatever the server (here a stream that never ends) is doing."""
    import multiprocessing

    from pytest_moeperf.serving.client_workers import run_point
    from pytest_moeperf.serving.load_point import LoadPoint

    reqs = [ServingRequest(f"r{i}", (1, 2, 3), 5, prompt_text="hi", messages=({"role": "user", "content": "hi"},))
            for i in range(8)]

    async def main(url, started):
        backend = OpenAIBackend(EndpointConfig(url, "stub", eos_field="none", client_workers=2))
        task = asyncio.ensure_future(run_point(backend, reqs, LoadPoint("concurrency", 2), timeout_s=600))
        while not started() and not task.done():
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    import sse_stub_server

    for started in (lambda: len(multiprocessing.active_children()) == 2,  # cancelled while they start
                    lambda: sse_stub_server.REQUESTS[0] >= seen + 2):  # cancelled while both stream
        seen = sse_stub_server.REQUESTS[0]
        with _stub_in_thread("endless") as url:
            asyncio.run(main(url, started))  # asyncio.run waits for the executor thread, which ends the processes
        assert multiprocessing.active_children() == []
