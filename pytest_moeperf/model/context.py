"""Exact post-template context control (paper section 3.2).

The paper applies each model's chat template and then enforces an exact
post-template context of ``c`` tokens, so prefill cost is equal across models.
Here the *user content* is sized so that ``apply_chat_template(...,
add_generation_prompt=True)`` yields exactly ``c`` ids; the templated ids are
never cut, so the system/user headers and the assistant generation prompt stay
intact.  (Trimming the templated ids instead cuts the generation prompt off:
``mode="paper-truncate"`` reproduces that flaw for a named variant.)

Tokenization is not additive (BPE/Unigram merge across a cut, one character can
be 1..4 tokens), so the length of the prompt is measured after templating at
every step: a binary search on the filler's character count, then padding with
characters that add exactly one token each.

Minimum context: at least one content token, i.e. ``overhead + 1`` where the
overhead is the templated length of an empty user turn.  An empty user turn is
not a prompt, and allowing it would let ``c == overhead`` silently measure a
different workload than every other ``c``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

MODES = ("exact", "paper-truncate")

# Characters tried, in order, to grow the prompt by exactly one token.
PAD_CHARS = (" ", ".", "\n", "a", "x", "0", "-", ",", "!", "1", "e", "#")
MAX_PAD_STEPS = 64  # a deficit above this means the filler search went wrong
MAX_BACKOFF_CHARS = 32  # characters dropped from the filler when padding gets stuck
MAX_FILLER_DOUBLINGS = 24

# Probe contents for template_markers(): different first and last characters, so
# ids they share can only come from the template.
_MARKER_PROBES = ("a", "7 Z.", "- ?")


class ContextError(ValueError):
    """A requested context cannot be built or does not fit; the message says the fix."""


@dataclass(frozen=True)
class ContextResult:
    """A templated prompt and how its ``target_tokens`` split into template and content.

    ``overhead_tokens`` is the templated length with an empty user turn;
    ``content_tokens`` is ``target_tokens - overhead_tokens`` in "exact" mode (what
    the content adds, which is not its standalone token count when tokenization
    merges across the boundary) and the content ids kept after the header in
    "paper-truncate" mode.
    """

    input_ids: list[int]
    target_tokens: int
    overhead_tokens: int
    content_tokens: int
    mode: str


@dataclass(frozen=True)
class TemplateMarkers:
    """Token ids every templated prompt of a tokenizer starts and ends with.

    ``header_ids``: system message and user header, before the content.
    ``trailer_ids``: end of the user turn plus the assistant generation prompt.
    ``generation_prompt_ids``: the part ``add_generation_prompt=True`` adds; for a
    template that always emits it (Yi-34B-Chat), the whole trailer.
    """

    header_ids: list[int]
    trailer_ids: list[int]
    generation_prompt_ids: list[int]

    def as_lists(self) -> list[list[int]]:
        return [self.header_ids, self.trailer_ids, self.generation_prompt_ids]


def _messages(content: str, system: str | None) -> list[dict[str, str]]:
    user = [{"role": "user", "content": content}]
    return user if system is None else [{"role": "system", "content": system}, *user]


def templated_ids(tokenizer, content: str, system: str | None = None) -> list[int]:
    """Ids of one user turn (plus optional system prompt) with the generation prompt."""
    ids = tokenizer.apply_chat_template(_messages(content, system), add_generation_prompt=True,
                                        tokenize=True, return_dict=False)
    return list(ids)


def template_overhead(tokenizer, system: str | None = None) -> int:
    """Fixed cost of the chat template in tokens: the templated empty user turn."""
    return len(templated_ids(tokenizer, "", system))


def min_context_tokens(tokenizer, system: str | None = None) -> int:
    """Smallest context ``build_exact_context`` accepts: overhead + one content token."""
    return template_overhead(tokenizer, system) + 1


def _family_label(tokenizer) -> str:
    return getattr(tokenizer, "moeperf_family", None) or tokenizer.name_or_path or "this tokenizer"


def _common_prefix_len(seqs: list[list[int]]) -> int:
    n = 0
    while all(len(s) > n for s in seqs) and len({s[n] for s in seqs}) == 1:
        n += 1
    return n


def template_markers(tokenizer, system: str | None = None) -> TemplateMarkers:
    """Header, trailer and generation-prompt ids of the tokenizer's chat template.

    Found empirically, so they hold for any tokenizer: the header is the longest
    prefix shared by prompts with different contents, the trailer the longest
    shared suffix.  Tests use them to check that a sized prompt kept both intact.
    """
    probes = [templated_ids(tokenizer, text, system) for text in _MARKER_PROBES]
    head = _common_prefix_len(probes)
    tail = _common_prefix_len([p[::-1] for p in probes])
    header, trailer = probes[0][:head], probes[0][len(probes[0]) - tail:]

    messages = _messages(_MARKER_PROBES[0], system)
    with_prompt, without_prompt = (
        tokenizer.apply_chat_template(messages, add_generation_prompt=flag, tokenize=False)
        for flag in (True, False))
    generation = trailer
    if with_prompt.startswith(without_prompt) and len(with_prompt) > len(without_prompt):
        ids = tokenizer(with_prompt[len(without_prompt):], add_special_tokens=False)["input_ids"]
        if ids and trailer[len(trailer) - len(ids):] == ids:
            generation = list(ids)
    return TemplateMarkers(header, trailer, generation)


def filler_text(filler: str | None, seed: int, min_chars: int) -> str:
    """Deterministic filler of at least ``min_chars`` characters.

    Default: common English words drawn with ``random.Random(seed)`` (about one
    token per word with word-level tokenizers, like a real prompt).  A given
    ``filler`` is repeated, starting at offset ``seed % len(filler)``.
    """
    if filler is None:
        from pytest_moeperf.model.tokenizer import COMMON_WORDS

        rng = random.Random(seed)
        words: list[str] = []
        size = 0
        while size < min_chars:
            word = rng.choice(COMMON_WORDS)
            words.append(word)
            size += len(word) + 1
        return " ".join(words)
    if not filler:
        raise ContextError("filler text is empty; pass a non-empty filler or None for the default")
    start = seed % len(filler)
    unit = filler[start:] + filler[:start]
    return unit * (min_chars // len(unit) + 1)


def _pad_to_target(tokenizer, content: str, target_tokens: int, system: str | None) -> str | None:
    """Append characters that each add exactly one token until the prompt is exact.

    Returns the padded content, or None if no pad character adds exactly one token
    at some step (merges can make a character add 0 or 2): the caller backs off.
    """
    length = len(templated_ids(tokenizer, content, system))
    for _ in range(MAX_PAD_STEPS + 1):
        if length == target_tokens:
            return content
        if length > target_tokens:
            return None
        for char in PAD_CHARS:
            grown = len(templated_ids(tokenizer, content + char, system))
            if grown == length + 1:
                content, length = content + char, grown
                break
        else:
            return None
    return None


def _exact_ids(tokenizer, target_tokens: int, filler: str | None, seed: int,
               system: str | None) -> list[int]:
    """Templated ids of exactly ``target_tokens``; the content is sized, never the ids."""

    def length_of(n_chars: int) -> int:
        return len(templated_ids(tokenizer, text[:n_chars], system))

    # Enough filler that all of it overshoots the target: estimate characters per
    # token on a sample, add a margin, and double below if the estimate was short.
    sample = filler_text(filler, seed, 2048)
    sample_tokens = max(1, len(tokenizer(sample, add_special_tokens=False)["input_ids"]))
    chars_per_token = len(sample) / sample_tokens
    text = filler_text(filler, seed, int(chars_per_token * target_tokens * 1.25) + 64)
    for _ in range(MAX_FILLER_DOUBLINGS):
        if length_of(len(text)) > target_tokens:
            break
        text += text
    else:
        raise ContextError(
            f"the filler text adds too few tokens to reach context {target_tokens} for "
            f"{_family_label(tokenizer)}; use a filler with visible, non-whitespace text")

    # Largest prefix whose prompt still fits: length_of(low) <= target < length_of(high).
    low, high = 0, len(text)
    while high - low > 1:
        mid = (low + high) // 2
        if length_of(mid) <= target_tokens:
            low = mid
        else:
            high = mid

    for back in range(min(MAX_BACKOFF_CHARS, low) + 1):
        content = _pad_to_target(tokenizer, text[:low - back], target_tokens, system)
        if content is not None:
            return templated_ids(tokenizer, content, system)
    raise ContextError(
        f"could not size the prompt to exactly {target_tokens} tokens for "
        f"{_family_label(tokenizer)} (tokenization merges every pad character); "
        f"use another context or pass a different filler")


def _check_encodable(name: str, text: str | None) -> None:
    """Tokenizers take UTF-8; a lone surrogate (a str that is no Unicode text) would raise a
    TypeError deep inside them."""
    if text is None:
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ContextError(f"{name}: not valid Unicode text (lone surrogate {text[exc.start]!r} at "
                           f"character {exc.start}); pass UTF-8 text") from None


def build_exact_context(tokenizer, target_tokens: int, *, filler: str | None = None, seed: int = 0,
                        system: str | None = None, mode: str = "exact") -> ContextResult:
    """Build a chat-templated prompt of exactly ``target_tokens`` tokens.

    mode="exact" (the paper's stated method, done right): one user turn whose
    content (deterministic filler, ``seed``-ed; optional ``system`` prompt) is
    sized so the templated prompt, generation prompt included, has exactly
    ``target_tokens`` ids.  Needs ``target_tokens >= overhead + 1``; below that
    raises ``ContextError``.  Also raises it if no exact size is found after a
    bounded search (not seen with byte-fallback tokenizers).

    mode="paper-truncate" reproduces the flaw of trimming the *templated ids*:
    a prompt longer than the target is templated and its first ``target_tokens``
    ids are kept, which cuts off the end of the user turn and the assistant
    generation prompt, so the model is asked to continue the user's text.  Any
    ``target_tokens >= 1`` is accepted there, as truncation does not care.
    """
    if mode not in MODES:
        raise ContextError(f"unknown context mode {mode!r}; use one of: {', '.join(MODES)}")
    if target_tokens < 1:
        raise ContextError(f"context {target_tokens} must be a positive number of tokens")
    for name, text in (("filler", filler), ("system prompt", system)):
        _check_encodable(name, text)
    overhead = template_overhead(tokenizer, system)

    if mode == "paper-truncate":
        markers = template_markers(tokenizer, system)
        longer = max(target_tokens + len(markers.trailer_ids), overhead + 1)
        ids = _exact_ids(tokenizer, longer, filler, seed, system)[:target_tokens]
        content = max(0, target_tokens - len(markers.header_ids))
        return ContextResult(ids, target_tokens, overhead, content, mode)

    if target_tokens <= overhead:
        raise ContextError(
            f"context {target_tokens} is below the chat template's fixed overhead of {overhead} "
            f"tokens for {_family_label(tokenizer)}; use a context of at least {overhead + 1}")
    ids = _exact_ids(tokenizer, target_tokens, filler, seed, system)
    assert len(ids) == target_tokens
    return ContextResult(ids, target_tokens, overhead, target_tokens - overhead, mode)


def check_context_fits(target_tokens: int, new_tokens: int, max_positions: int,
                       model_name: str) -> None:
    """Raise ContextError if prompt plus generated tokens exceed the model's positions."""
    if target_tokens < 1 or new_tokens < 0:
        raise ContextError(f"context {target_tokens} and new tokens {new_tokens} must be "
                           f"positive; use a context >= 1 and new tokens >= 0")
    total = target_tokens + new_tokens
    if total > max_positions:
        room = max_positions - new_tokens
        fix = (f"use a context of at most {room} or fewer new tokens" if room >= 1
               else f"use fewer than {max_positions} new tokens")
        raise ContextError(
            f"context {target_tokens} + {new_tokens} new tokens = {total} exceeds {model_name}'s "
            f"max_position_embeddings of {max_positions}; {fix}")
