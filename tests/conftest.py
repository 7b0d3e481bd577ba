"""Fixtures shared by the test files."""

from __future__ import annotations

import pathlib

import pytest
# pytester's in-process runs drop from sys.modules what was first imported inside them, but torch's C++ operator
# registrations stay: a later import of torch.distributed (transformers' model loading imports it) then fails with
# "Only a single TORCH_LIBRARY can be used to register the namespace c10d_functional" (test order dependent:
# tests/test_serving_openai_server.py failed so under `-m e2e`). Imported once here, before any such run.
import transformers.modeling_utils  # noqa: F401

from pytest_moeperf.model.save_tiny import save_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """Factory ``tiny_checkpoint(model_name) -> pathlib.Path``: a saved tiny random checkpoint.

    ``model_name`` is a preset (tiny-moe, tiny-dense); the folder has the model's config and
    safetensors weights, its tokenizer and its chat template. Built once per name per session
    (a few hundred ms each); treat the folder as read-only, other tests share it.
    """
    made: dict[str, pathlib.Path] = {}

    def make(model_name: str) -> pathlib.Path:
        if model_name not in made:
            folder = tmp_path_factory.mktemp(f"checkpoint-{model_name}")
            made[model_name] = save_tiny_checkpoint(model_name, folder)
        return made[model_name]

    return make


@pytest.fixture(scope="session")
def transformers_server(tiny_checkpoint, tmp_path_factory):
    """A real ``transformers serve`` of tiny-dense on 127.0.0.1 (a free port), started once per
    session and stopped at its end; ``.base_url``, ``.model``, ``.process``, ``.log_tail()``."""
    from transformers_server import start_transformers_serve

    log = tmp_path_factory.mktemp("serve") / "serve.log"
    server = start_transformers_serve(str(tiny_checkpoint("tiny-dense")), str(log))
    try:
        yield server
    finally:
        server.stop()
