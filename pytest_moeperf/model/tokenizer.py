"""Offline tokenizers that carry each model family's real chat template.

The benchmark builds models with random weights from real architectures, so no
checkpoint (and no hub) is needed to measure prefill and decode.  What the paper's
context control (section 3.2) does need is a tokenizer with the family's chat
template: the context ``c`` is counted *after* ``apply_chat_template``.  This
module builds such a tokenizer in memory, with no files and no training:

* ids 0..255 are the 256 bytes (GPT-2 byte-level alphabet, id == byte value), so
  any text, emoji included, always tokenizes;
* the family's special tokens follow at 256.., each a single token;
* then, as far as ``vocab_size`` allows, whole-word pieces: first every word of
  the family's template text, then common English words.  A Unigram model picks
  the fewest pieces, so template text and English filler cost about one token
  per word, as with the real tokenizers.  Without the word pieces the gpt-oss
  template alone would cost ~246 byte tokens, above the paper's c = 128.
* ``chat_template`` is a faithful reduced copy of the family's real template.

Word pieces make tokenization non-additive (``"mess"`` + ``"age"`` inside one
word becomes one token), like real BPE: context.py must not assume additivity.
With a real checkpoint, ``get_tokenizer(..., checkpoint=path)`` loads the
checkpoint's own tokenizer and template instead.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

BYTE_TOKENS_COUNT = 256

# Reduced harmony template of gpt-oss (openai/gpt-oss-20b chat_template.jinja):
# the system message (model identity, knowledge cutoff, date, reasoning effort,
# channels), a developer message "# Instructions" when a system prompt is given,
# then <|start|>{role}<|message|>{content}<|end|> turns, and "<|start|>assistant"
# as the generation prompt.  The real template stamps today's date with
# strftime_now(); here the date is a fixed default (same length as any
# YYYY-MM-DD) so ids are reproducible; pass current_date=... to override.
GPT_OSS_TEMPLATE = (
    "{%- set effort = reasoning_effort | default('medium') -%}"
    "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n"
    "Knowledge cutoff: 2024-06\n"
    "Current date: {{ current_date | default('2025-06-28') }}\n\n"
    "Reasoning: {{ effort }}\n\n"
    "# Valid channels: analysis, commentary, final. Channel must be included for every message."
    "<|end|>"
    "{%- for message in messages -%}"
    "{%- if message['role'] in ('system', 'developer') -%}"
    "{{- '<|start|>developer<|message|># Instructions\n\n' + message['content'] + '<|end|>' -}}"
    "{%- elif message['role'] == 'user' -%}"
    "{{- '<|start|>user<|message|>' + message['content'] + '<|end|>' -}}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{- '<|start|>assistant<|channel|>final<|message|>' + message['content'] + '<|end|>' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|start|>assistant{%- endif -%}"
)

# Reduced Qwen3 template (ChatML, no default system prompt).  The default form is
# kept: enable_thinking=False appends the empty think block exactly as Qwen3 does.
QWEN3_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\n' -}}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}"
    "{{- '<think>\n\n</think>\n\n' -}}"
    "{%- endif -%}"
    "{%- endif -%}"
)

# Yi-34B-Chat's template, verbatim: a system prompt is emitted as bare text, and
# every user turn is followed by the assistant header whether or not
# add_generation_prompt is set (the real template ignores that flag).
YI_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set system_message = messages[0]['content'] %}{% endif %}"
    "{% if system_message is defined %}{{ system_message }}{% endif %}"
    "{% for message in messages %}{% set content = message['content'] %}"
    "{% if message['role'] == 'user' %}"
    "{{ '<|im_start|>user\\n' + content + '<|im_end|>\\n<|im_start|>assistant\\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ content + '<|im_end|>' + '\\n' }}{% endif %}"
    "{% endfor %}"
)


@dataclass(frozen=True)
class FamilySpec:
    """What an offline tokenizer of one model family needs: template and tokens."""

    template: str
    special_tokens: tuple[str, ...]  # ids 256.. in this order; all single tokens
    eos_token: str
    pad_token: str
    bos_token: str | None = None
    unk_token: str | None = None
    plain_tokens: tuple[str, ...] = ()  # added but not special (Qwen3's <think>)


FAMILIES: dict[str, FamilySpec] = {
    "gpt-oss": FamilySpec(
        template=GPT_OSS_TEMPLATE,
        special_tokens=("<|startoftext|>", "<|endoftext|>", "<|return|>", "<|constrain|>",
                        "<|channel|>", "<|start|>", "<|end|>", "<|message|>", "<|call|>"),
        eos_token="<|return|>",
        pad_token="<|endoftext|>",
    ),
    "qwen3": FamilySpec(
        template=QWEN3_TEMPLATE,
        special_tokens=("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
        plain_tokens=("<think>", "</think>"),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    ),
    "yi": FamilySpec(
        template=YI_TEMPLATE,
        special_tokens=("<unk>", "<|startoftext|>", "<|endoftext|>",
                        "<|im_start|>", "<|im_end|>", "<|im_sep|>"),
        eos_token="<|im_end|>",
        pad_token="<unk>",
        bos_token="<|startoftext|>",
        unk_token="<unk>",
    ),
}

# The CPU presets reuse the template of the architecture they are built from.
FAMILY_ALIASES = {"tiny-moe": "gpt-oss", "tiny-dense": "qwen3"}


def template_family(family: str) -> str:
    """Map a model family or preset name to the family whose template it uses."""
    name = family.strip().lower()
    name = FAMILY_ALIASES.get(name, name)
    if name not in FAMILIES:
        known = ", ".join(sorted([*FAMILIES, *FAMILY_ALIASES]))
        raise ValueError(f"unknown model family {family!r}; use one of: {known}")
    return name


def min_vocab_size(family: str) -> int:
    """Smallest vocab that holds the 256 byte tokens plus the family's added tokens."""
    spec = FAMILIES[template_family(family)]
    return BYTE_TOKENS_COUNT + len(spec.special_tokens) + len(spec.plain_tokens)


@functools.lru_cache(maxsize=1)
def _byte_alphabet() -> tuple[str, ...]:
    """GPT-2's printable stand-in character for each byte, indexed by byte value."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    chars = {}
    extra = 0
    for byte in range(BYTE_TOKENS_COUNT):
        if byte in printable:
            chars[byte] = chr(byte)
        else:
            chars[byte] = chr(BYTE_TOKENS_COUNT + extra)
            extra += 1
    return tuple(chars[b] for b in range(BYTE_TOKENS_COUNT))


# Common English words: offline vocab pieces (after the template's words) and
# the default filler text of context.py, so filler costs ~1 token per word.
COMMON_WORDS = tuple("""
the of and to in is that it for was on are as with be at by this have from or
one had not but what all were when we there can an your which their said if do
will each about how up out them then she many some so these would other into has
more her two like him see time could no make than first been its who now people
my made over did down only way find use may water long little very after words
called just where most know get through back much before go good new write our
used me man too any day same right look think also around another came come work
three word must because does part even place well such here take why things help
put years different away again off went old number great tell men say small every
found still between name should home big give air line set own under read last
never us left end along while might next sound below saw something thought both
few those always looked show large often together asked house world going want
school important until form food keep children feet land side without boy once
animals life enough took sometimes four head above kind began almost live page
got earth need far hand high year mother light parts country father let night
following picture being study second eyes soon times story boys since white days
ever paper hard near sentence better best across during today others however sure
means knew try told young miles sun ways thing whole hear example heard several
change answer room sea against top turned learn point city play toward five using
himself usually model data system memory token context expert dense sparse
""".split())


def _template_words(spec: FamilySpec) -> list[str]:
    """Byte-level pre-tokens of the template's own text, in order of appearance.

    Rendered with a system prompt and an empty user turn so every literal of the
    template shows up; special tokens are cut out since they are tokens already.
    """
    import re

    import jinja2
    from tokenizers import pre_tokenizers

    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    text = env.from_string(spec.template).render(
        messages=[{"role": "system", "content": ""}, {"role": "user", "content": ""}],
        add_generation_prompt=True)
    added = [*spec.special_tokens, *spec.plain_tokens]
    chunks = re.split("|".join(map(re.escape, added)), text)
    splitter = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    return [piece for chunk in chunks for piece, _ in splitter.pre_tokenize_str(chunk)]


def _word_pieces(spec: FamilySpec, max_count: int) -> list[str]:
    """Whole-word vocab pieces: template words first, then common words (both forms)."""
    alphabet = set(_byte_alphabet())
    space = _byte_alphabet()[ord(" ")]
    candidates = [*_template_words(spec)]
    for word in COMMON_WORDS:
        candidates += [space + word, word]
    pieces: list[str] = []
    for piece in candidates:
        if piece not in alphabet and piece not in pieces:
            pieces.append(piece)
    return pieces[:max_count]


def build_offline_tokenizer(family: str, vocab_size: int):
    """Build a byte-fallback word tokenizer with ``family``'s chat template, in memory.

    Layout (all ids < ``vocab_size``, the model's embedding rows): bytes at 0..255,
    the family's added tokens at 256.., then as many whole-word pieces as fit.
    Deterministic and built in milliseconds; never touches the disk or the hub.
    Returns a ``transformers.PreTrainedTokenizerFast`` whose ``chat_template``,
    eos/pad (and for Yi bos/unk) tokens are set; ``moeperf_family`` names the
    family for error messages.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    name = template_family(family)
    spec = FAMILIES[name]
    needed = min_vocab_size(name)
    if vocab_size < needed:
        raise ValueError(
            f"vocab_size {vocab_size} is too small for the offline {family} tokenizer; "
            f"use a vocab_size of at least {needed} (256 bytes + {needed - 256} added tokens)")

    added = [*spec.special_tokens, *spec.plain_tokens]
    # Scores: a byte costs 10, a word 1, so Viterbi prefers whole words; added
    # tokens are matched before the model runs, their score only keeps them unused.
    pieces = [(char, -10.0) for char in _byte_alphabet()]
    pieces += [(token, -1000.0) for token in added]
    pieces += [(word, -1.0) for word in _word_pieces(spec, vocab_size - needed)]
    core = Tokenizer(models.Unigram(pieces, None, False))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens([AddedToken(t, special=True, normalized=False)
                             for t in spec.special_tokens])
    core.add_tokens([AddedToken(t, special=False, normalized=False) for t in spec.plain_tokens])

    optional = {k: v for k, v in (("bos_token", spec.bos_token), ("unk_token", spec.unk_token))
                if v is not None}
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token=spec.eos_token, pad_token=spec.pad_token,
        model_max_length=1 << 30, name_or_path=f"offline-{family}", **optional)
    tokenizer.chat_template = spec.template
    tokenizer.moeperf_family = family
    assert len(tokenizer) == len(pieces) <= vocab_size
    return tokenizer


@functools.lru_cache(maxsize=32)
def get_tokenizer(family: str, vocab_size: int, checkpoint: str | None = None):
    """Return the checkpoint's tokenizer if ``checkpoint`` is given, else the offline one.

    Cached per arguments: callers share one instance, so do not mutate it.  A
    checkpoint must load offline (a local directory, or a hub id already in the
    local hub cache; nothing is downloaded), carry a chat template, and have all its ids below ``vocab_size``;
    otherwise a one-line ``ValueError`` says what to pass instead.
    """
    if checkpoint is None:
        return build_offline_tokenizer(family, vocab_size)
    import os

    path = os.path.expanduser(checkpoint)
    if path.startswith(("/", "./", "../")) and not os.path.isdir(path):
        raise ValueError(
            f"checkpoint directory {checkpoint!r} does not exist; pass a local checkpoint "
            f"directory with tokenizer files, or no checkpoint to use the offline {family} "
            f"tokenizer")
    from transformers import AutoTokenizer

    try:
        # local_files_only: the benchmark machines reach no hub; a hub id works only
        # if it is in the local cache (otherwise the hub client retries for ~45 s).
        tokenizer = AutoTokenizer.from_pretrained(checkpoint, local_files_only=True)
    except Exception as exc:  # OSError, ValueError, hub errors: all mean "cannot load"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"cannot load a tokenizer from checkpoint {checkpoint!r} offline ({reason}); pass a "
            f"local checkpoint directory with tokenizer files (download it beforehand), or no "
            f"checkpoint to use the offline {family} tokenizer") from None
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"the tokenizer of checkpoint {checkpoint!r} has no chat_template; use a chat/instruct "
            f"checkpoint, or no checkpoint to use the offline {family} tokenizer")
    if len(tokenizer) > vocab_size:
        raise ValueError(
            f"the tokenizer of checkpoint {checkpoint!r} has {len(tokenizer)} tokens but the model "
            f"has vocab_size {vocab_size}; use the checkpoint's own config (vocab_size >= "
            f"{len(tokenizer)})")
    tokenizer.moeperf_family = family
    return tokenizer
