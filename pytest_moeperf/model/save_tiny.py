"""``python -m pytest_moeperf save-tiny tiny-dense ./my-model``: a tiny random checkpoint folder to serve.

What a user's checkpoint holds (config.json, model.safetensors, the tokenizer files and the chat
template), written by transformers' own ``save_pretrained``, so ``transformers serve ./my-model`` (or
``--moeperf-weights NAME=./my-model``) loads it as it would real weights. Only the tiny presets:
the large ones would write tens of GB of random weights. The folder must be new or empty, so no
checkpoint is ever overwritten. The tests use :func:`save_tiny_checkpoint` too.
"""

from __future__ import annotations

from pathlib import Path


def tiny_presets() -> list[str]:
    from pytest_moeperf.model.presets import PRESETS

    return [name for name in PRESETS if name.startswith("tiny")]


def save_tiny_checkpoint(model_name: str, folder: Path, seed: int = 0) -> Path:
    """Save preset ``model_name`` with seeded random weights and its offline tokenizer into ``folder``."""
    import torch
    from transformers import AutoModelForCausalLM

    from pytest_moeperf.model.presets import get_preset
    from pytest_moeperf.model.tokenizer import build_offline_tokenizer

    preset = get_preset(model_name)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(preset.make_config())
    model.save_pretrained(folder)
    build_offline_tokenizer(preset.family, preset.vocab_size).save_pretrained(folder)
    return Path(folder)


def add_arguments(parser) -> None:
    parser.add_argument("model", metavar="PRESET", help=f"a tiny preset: {', '.join(tiny_presets())}")
    parser.add_argument("folder", metavar="FOLDER", help="a new (or empty) folder to write the checkpoint into")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default: 0)")


def run(args) -> int:
    tiny = tiny_presets()
    if args.model not in tiny:
        raise ValueError(f"save-tiny: {args.model!r} is not a tiny preset; give one of {', '.join(tiny)}")
    folder = Path(args.folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ValueError(f"save-tiny: {folder} exists and is not an empty folder; give a new folder")
    folder.mkdir(parents=True, exist_ok=True)
    save_tiny_checkpoint(args.model, folder, args.seed)
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    print(f"wrote {args.model} (seed {args.seed}) to {folder}: {size / 1e3:.0f} kB; serve it on the CPU with\n"
          f"  OMP_NUM_THREADS=1 transformers serve {folder} --continuous-batching --cb-num-blocks 64 "
          f"--cb-block-size 32 --cb-max-batch-tokens 256 --port 8000")
    return 0
