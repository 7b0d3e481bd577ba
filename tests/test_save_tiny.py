"""``python -m pytest_moeperf save-tiny``: the checkpoint the endpoint recipe serves (docs/serving.md)."""

from __future__ import annotations

import pytest

from pytest_moeperf.__main__ import main


def test_save_tiny_writes_a_checkpoint_transformers_loads(tmp_path, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tmp_path / "my-model"
    assert main(["save-tiny", "tiny-dense", str(folder)]) == 0
    assert "OMP_NUM_THREADS=1 transformers serve" in capsys.readouterr().out
    model = AutoModelForCausalLM.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    assert tok.chat_template and model.config.vocab_size >= len(tok)
    ids = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    assert len(ids) > 0


@pytest.mark.parametrize("args,msg", [
    (["gpt-oss-20b", "NEW"], "is not a tiny preset; give one of tiny-moe, tiny-dense"),
    (["tiny-dense", "FULL"], "exists and is not an empty folder; give a new folder"),
])
def test_save_tiny_refuses_in_one_line(tmp_path, capsys, args, msg):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "config.json").write_text("{}")
    args = [a.replace("NEW", str(tmp_path / "new")).replace("FULL", str(tmp_path / "full")) for a in args]
    assert main(["save-tiny", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: save-tiny: ") and msg in err and "\n" not in err
    assert (tmp_path / "full" / "config.json").read_text() == "{}"  # nothing overwritten
