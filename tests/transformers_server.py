"""Start and stop a real ``transformers serve`` on loopback for the endpoint tests (one per session).

The continuous-batching cache is capped (--cb-num-blocks): left to size itself on the CPU it takes a
share of host memory (12 GB seen on a 23 GB machine, then the OOM killer).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

SERVE_MAIN = "import sys; from transformers.cli.transformers import main; sys.argv[0] = 'transformers'; main()"
START_TIMEOUT_S = 150.0  # model load and uvicorn start; bounded so a broken install fails, not hangs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningServer:
    process: subprocess.Popen
    base_url: str
    model: str  # the name to send: transformers serve pins the positional model path
    log_path: str

    def log_tail(self, chars: int = 2000) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()[-chars:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)


def start_transformers_serve(model_dir: str, log_path: str) -> RunningServer:
    """``transformers serve DIR --continuous-batching`` on 127.0.0.1:<free port>; returns once the port
    accepts connections (the first request may still be slow: the backend's probe waits for it)."""
    port = free_port()
    cmd = [sys.executable, "-c", SERVE_MAIN, "serve", str(model_dir), "--continuous-batching",
           "--cb-block-size", "32", "--cb-num-blocks", "64", "--cb-max-batch-tokens", "256",
           "--host", "127.0.0.1", "--port", str(port)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    log.close()
    server = RunningServer(proc, f"http://127.0.0.1:{port}/v1", str(model_dir), log_path)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"transformers serve exited with {proc.returncode}:\n{server.log_tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return server
        except OSError:
            time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"transformers serve did not open port {port} in {START_TIMEOUT_S:g} s:\n{server.log_tail()}")
