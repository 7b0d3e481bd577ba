"""Fixtures shared by the test files."""

from __future__ import annotations

import pathlib

import pytest


def save_tiny_checkpoint(model_name: str, folder: pathlib.Path, seed: int = 0) -> pathlib.Path:
    """Save preset ``model_name`` with seeded random weights as a real checkpoint folder.

    What a user's checkpoint holds: config.json, model.safetensors, the tokenizer files and
    the chat template, all written by transformers' own ``save_pretrained``, so loading it
    takes the same path as real weights (``--moeperf-weights NAME=FOLDER``).
    """
    import torch
    from transformers import AutoModelForCausalLM

    from pytest_moeperf.model.presets import get_preset
    from pytest_moeperf.model.tokenizer import build_offline_tokenizer

    preset = get_preset(model_name)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(preset.make_config())
    model.save_pretrained(folder)
    tokenizer = build_offline_tokenizer(preset.family, preset.vocab_size)
    tokenizer.save_pretrained(folder)
    return folder


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
