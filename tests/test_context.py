"""Offline tokenizers with each family's chat template, and exact post-template context.

Paper section 3.2: the context ``c`` is counted after apply_chat_template and must
be exact.  These tests pin that the sized prompt is exactly ``c`` ids for any
filler and any reachable ``c``, that the template's header and the assistant
generation prompt survive, that the paper's truncation flaw cuts the latter off,
and that sizing converges for a real-world-like BPE tokenizer too.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pytest_moeperf.model.context import (
    ContextError,
    ContextResult,
    build_exact_context,
    check_context_fits,
    min_context_tokens,
    template_markers,
    template_overhead,
)
from pytest_moeperf.model.tokenizer import (
    COMMON_WORDS,
    QWEN3_TEMPLATE,
    build_offline_tokenizer,
    get_tokenizer,
    min_vocab_size,
)

# (family, vocab_size): the real architectures, the CPU presets, and the smallest
# vocab a family accepts (bytes + added tokens only, no word pieces).
CONFIGS = [("gpt-oss", 201088), ("qwen3", 151936), ("yi", 64000),
           ("tiny-moe", 512), ("tiny-dense", min_vocab_size("tiny-dense"))]
CONFIG_IDS = [f"{family}-{vocab}" for family, vocab in CONFIGS]

# Minimum reachable context (overhead + 1) of each offline tokenizer, no system prompt.
EXPECTED_MIN_CONTEXT = {"gpt-oss": 64, "qwen3": 9, "yi": 9, "tiny-moe": 64, "tiny-dense": 20}

FILLERS = st.one_of(
    st.none(),
    # "<" excluded: text like "<|im_end|>" in user content is parsed as a special token.
    # surrogates (category Cs) excluded: a str holding one is no Unicode text (ContextError, tested below)
    st.text(st.characters(blacklist_characters="<", blacklist_categories=("Cs",)), min_size=1, max_size=24),
    st.sampled_from(["🙂", "👩‍👩‍👧 ", " ", "\n", "\t \n", "日本語のテキスト", "é", "a"]),
)


def tokenizer_for(family: str, vocab_size: int):
    return get_tokenizer(family, vocab_size)


def assert_intact(tokenizer, result: ContextResult, system: str | None = None) -> None:
    markers = template_markers(tokenizer, system)
    ids = result.input_ids
    assert len(ids) == result.target_tokens
    assert ids[:len(markers.header_ids)] == markers.header_ids
    assert ids[len(ids) - len(markers.trailer_ids):] == markers.trailer_ids
    assert ids[len(ids) - len(markers.generation_prompt_ids):] == markers.generation_prompt_ids


# --- offline tokenizers -----------------------------------------------------------


def render(tokenizer, content: str, **kwargs) -> str:
    messages = [{"role": "user", "content": content}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False,
                                         **kwargs)


def test_gpt_oss_uses_the_harmony_format():
    text = render(tokenizer_for("gpt-oss", 201088), "hi")
    assert text.startswith("<|start|>system<|message|>You are ChatGPT, a large language model")
    assert "Reasoning: medium" in text
    assert text.endswith("<|end|><|start|>user<|message|>hi<|end|><|start|>assistant")


def test_gpt_oss_system_prompt_becomes_developer_instructions():
    tokenizer = tokenizer_for("gpt-oss", 201088)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert "<|start|>developer<|message|># Instructions\n\nBe brief.<|end|>" in text


def test_qwen3_uses_chatml_and_the_empty_think_block_when_thinking_is_off():
    tokenizer = tokenizer_for("qwen3", 151936)
    assert render(tokenizer, "hi") == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert render(tokenizer, "hi", enable_thinking=False).endswith(
        "<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_yi_uses_yi_34b_chat_chatml():
    tokenizer = tokenizer_for("yi", 64000)
    assert render(tokenizer, "hi") == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.parametrize(("family", "vocab_size"), CONFIGS, ids=CONFIG_IDS)
def test_offline_tokenizer_ids_fit_the_vocab_and_specials_are_single_tokens(family, vocab_size):
    tokenizer = tokenizer_for(family, vocab_size)
    assert len(tokenizer) <= vocab_size
    ids = tokenizer("héllo 👋 the model\n\t", add_special_tokens=False)["input_ids"]
    assert max(ids) < vocab_size
    assert tokenizer.decode(ids) == "héllo 👋 the model\n\t"
    for token in tokenizer.all_special_tokens:
        assert len(tokenizer(token, add_special_tokens=False)["input_ids"]) == 1
    assert tokenizer.eos_token_id is not None and tokenizer.pad_token_id is not None


def test_offline_tokenizer_bytes_are_ids_0_to_255():
    tokenizer = build_offline_tokenizer("tiny-dense", min_vocab_size("tiny-dense"))
    data = "A\x00é🙂"
    assert tokenizer(data, add_special_tokens=False)["input_ids"] == list(data.encode("utf-8"))


def test_offline_tokenizer_is_deterministic():
    # (its build time is no timed assertion here: a wall-clock bound fails on a busy machine)
    first = build_offline_tokenizer("gpt-oss", 201088)
    second = build_offline_tokenizer("gpt-oss", 201088)
    assert render(first, "x y") == render(second, "x y")
    assert first.get_vocab() == second.get_vocab()


def test_offline_tokenizer_rejects_a_vocab_without_room_for_bytes_and_specials():
    with pytest.raises(ValueError, match="use a vocab_size of at least 265"):
        build_offline_tokenizer("tiny-moe", 264)


def test_unknown_family_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown model family 'llama'.*qwen3"):
        build_offline_tokenizer("llama", 1000)


def test_get_tokenizer_caches_by_arguments():
    assert get_tokenizer("qwen3", 151936) is get_tokenizer("qwen3", 151936)
    assert get_tokenizer("qwen3", 151936) is not get_tokenizer("qwen3", 2000)


def test_checkpoint_that_cannot_load_is_a_one_line_value_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist; pass a local checkpoint") as info:
        get_tokenizer("qwen3", 151936, str(tmp_path / "missing"))
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="cannot load a tokenizer from checkpoint") as info:
        get_tokenizer("qwen3", 151936, str(tmp_path))  # exists, but holds no tokenizer
    assert "\n" not in str(info.value)


def test_checkpoint_without_chat_template_is_a_one_line_value_error(tmp_path):
    tokenizer = build_offline_tokenizer("qwen3", 2000)
    tokenizer.chat_template = None
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="has no chat_template") as info:
        get_tokenizer("qwen3", 151936, str(tmp_path))
    assert "\n" not in str(info.value)


def test_checkpoint_tokenizer_and_template_come_from_the_checkpoint(tmp_path):
    build_offline_tokenizer("yi", 64000).save_pretrained(tmp_path)
    loaded = get_tokenizer("qwen3", 151936, str(tmp_path))
    assert render(loaded, "hi") == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert len(build_exact_context(loaded, 100).input_ids) == 100


# --- exact context ----------------------------------------------------------------


@pytest.mark.parametrize(("family", "vocab_size"), CONFIGS, ids=CONFIG_IDS)
def test_minimum_context_is_overhead_plus_one(family, vocab_size):
    tokenizer = tokenizer_for(family, vocab_size)
    overhead = template_overhead(tokenizer)
    assert min_context_tokens(tokenizer) == overhead + 1 == EXPECTED_MIN_CONTEXT[family]
    result = build_exact_context(tokenizer, overhead + 1)
    assert (result.overhead_tokens, result.content_tokens) == (overhead, 1)
    assert_intact(tokenizer, result)
    with pytest.raises(ContextError):
        build_exact_context(tokenizer, overhead)


def test_below_overhead_message_names_the_minimum():
    tokenizer = tokenizer_for("gpt-oss", 201088)
    with pytest.raises(ContextError) as info:
        build_exact_context(tokenizer, 5)
    assert str(info.value) == ("context 5 is below the chat template's fixed overhead of 63 "
                               "tokens for gpt-oss; use a context of at least 64")
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("context_tokens", [128, 512, 1024, 2048])
def test_paper_contexts_are_exact_for_all_families(context_tokens):
    for family, vocab_size in CONFIGS:
        tokenizer = tokenizer_for(family, vocab_size)
        result = build_exact_context(tokenizer, context_tokens)
        assert_intact(tokenizer, result)
        assert result.content_tokens == context_tokens - result.overhead_tokens


def test_system_prompt_counts_in_the_overhead_and_stays_intact():
    for family, vocab_size in CONFIGS:
        tokenizer = tokenizer_for(family, vocab_size)
        system = "You are a terse benchmark assistant. 🙂"
        result = build_exact_context(tokenizer, 300, system=system)
        assert result.overhead_tokens == template_overhead(tokenizer, system)
        assert result.overhead_tokens > template_overhead(tokenizer)
        assert system in tokenizer.decode(result.input_ids)
        assert_intact(tokenizer, result, system)


def test_same_seed_same_prompt_different_seed_different_prompt():
    tokenizer = tokenizer_for("qwen3", 151936)
    first, again = (build_exact_context(tokenizer, 256, seed=1) for _ in range(2))
    other = build_exact_context(tokenizer, 256, seed=2)
    assert first == again
    assert first.input_ids != other.input_ids and len(other.input_ids) == 256


@pytest.mark.parametrize(("family", "vocab_size"), CONFIGS, ids=CONFIG_IDS)
def test_paper_truncate_cuts_the_generation_prompt_off(family, vocab_size):
    tokenizer = tokenizer_for(family, vocab_size)
    markers = template_markers(tokenizer)
    exact = build_exact_context(tokenizer, 128)
    truncated = build_exact_context(tokenizer, 128, mode="paper-truncate")
    assert len(truncated.input_ids) == 128 and truncated.mode == "paper-truncate"
    assert truncated.input_ids[:len(markers.header_ids)] == markers.header_ids
    tail = truncated.input_ids[-len(markers.trailer_ids):]
    assert tail != markers.trailer_ids
    gen = markers.generation_prompt_ids
    assert truncated.input_ids[-len(gen):] != gen
    # Visible in text: the exact prompt asks the assistant to answer, the truncated
    # one ends inside the user's message.
    assert tokenizer.decode(exact.input_ids).endswith(tokenizer.decode(gen))
    assert not tokenizer.decode(truncated.input_ids).endswith(tokenizer.decode(gen))


def test_paper_truncate_below_overhead_cuts_into_the_header():
    tokenizer = tokenizer_for("gpt-oss", 201088)
    result = build_exact_context(tokenizer, 10, mode="paper-truncate")
    assert len(result.input_ids) == 10 and result.content_tokens == 0


def test_unknown_mode_and_nonpositive_context_are_rejected():
    tokenizer = tokenizer_for("qwen3", 151936)
    with pytest.raises(ContextError, match="unknown context mode"):
        build_exact_context(tokenizer, 100, mode="pad-left")
    with pytest.raises(ContextError, match="positive"):
        build_exact_context(tokenizer, 0)
    with pytest.raises(ContextError, match="filler text is empty"):
        build_exact_context(tokenizer, 100, filler="")


def test_check_context_fits():
    check_context_fits(4032, 64, 4096, "yi-34b")
    with pytest.raises(ContextError) as info:
        check_context_fits(4096, 64, 4096, "yi-34b")
    assert str(info.value) == ("context 4096 + 64 new tokens = 4160 exceeds yi-34b's "
                               "max_position_embeddings of 4096; use a context of at most 4032 "
                               "or fewer new tokens")
    with pytest.raises(ContextError, match="use fewer than 128 new tokens"):
        check_context_fits(1, 200, 128, "tiny")


@pytest.mark.parametrize(("family", "vocab_size"), CONFIGS, ids=CONFIG_IDS)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(filler=FILLERS, seed=st.integers(0, 2**31), extra_tokens=st.integers(0, 4032))
@example(filler="🙂", seed=0, extra_tokens=0)
@example(filler=" ", seed=0, extra_tokens=4031)
@example(filler="\n\t", seed=5, extra_tokens=1)
def test_any_filler_and_reachable_context_is_exact_with_template_intact(
        family, vocab_size, filler, seed, extra_tokens):
    tokenizer = tokenizer_for(family, vocab_size)
    target = min(min_context_tokens(tokenizer) + extra_tokens, 4096)
    result = build_exact_context(tokenizer, target, filler=filler, seed=seed)
    assert_intact(tokenizer, result)


@pytest.mark.parametrize(("family", "vocab_size"), CONFIGS, ids=CONFIG_IDS)
@settings(max_examples=10, deadline=None)
@given(target=st.integers(1, 80))
def test_below_overhead_always_raises_with_the_minimum(family, vocab_size, target):
    tokenizer = tokenizer_for(family, vocab_size)
    overhead = template_overhead(tokenizer)
    if target > overhead:
        assert len(build_exact_context(tokenizer, target).input_ids) == target
        return
    with pytest.raises(ContextError, match=f"use a context of at least {overhead + 1}$"):
        build_exact_context(tokenizer, target)


# --- a real-world-like BPE tokenizer ------------------------------------------------


@pytest.fixture(scope="module")
def bpe_tokenizer():
    """Byte-level BPE trained in memory on a few hundred sentences, with ChatML."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    rng = random.Random(0)
    sentences = [" ".join(rng.choice(COMMON_WORDS) for _ in range(rng.randint(4, 14))) + "."
                 for _ in range(400)]
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=700, show_progress=False,
                                  special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(sentences, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>")
    tokenizer.chat_template = QWEN3_TEMPLATE
    return tokenizer


def test_text_that_is_not_unicode_is_a_context_error(bpe_tokenizer):
    # hypothesis found it: a lone surrogate made the tokenizer raise a TypeError
    with pytest.raises(ContextError, match="not valid Unicode text.*pass UTF-8 text"):
        build_exact_context(bpe_tokenizer, 200, filler="\ud800")
    with pytest.raises(ContextError, match="system prompt"):
        build_exact_context(bpe_tokenizer, 200, system="a\udfffb")


def test_bpe_tokenization_is_not_additive(bpe_tokenizer):
    def count(text: str) -> int:
        return len(bpe_tokenizer(text, add_special_tokens=False)["input_ids"])

    assert count("important") < count("impor") + count("tant")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(filler=FILLERS, seed=st.integers(0, 2**31), extra_tokens=st.integers(0, 4000))
@example(filler=None, seed=0, extra_tokens=0)
@example(filler="important ", seed=3, extra_tokens=777)
def test_bpe_sizing_converges_to_exact_context(bpe_tokenizer, filler, seed, extra_tokens):
    target = min_context_tokens(bpe_tokenizer) + extra_tokens
    result = build_exact_context(bpe_tokenizer, target, filler=filler, seed=seed)
    assert len(result.input_ids) == target
    markers = template_markers(bpe_tokenizer)
    assert result.input_ids[-len(markers.trailer_ids):] == markers.trailer_ids
    text = bpe_tokenizer.decode(result.input_ids)
    assert text.startswith("<|im_start|>user\n")
    assert text.endswith("<|im_end|>\n<|im_start|>assistant\n")
