"""Give a workload's exact post-template prompts the forms an HTTP server takes: chat messages and text.

The workload builds each prompt as token ids of exactly the context asked for (context.py). A
server re-applies its own chat template to messages (/v1/chat/completions) or tokenizes text
(/v1/completions), so both forms are recovered here and checked locally to give back the same ids;
the server's ``usage.prompt_tokens`` is checked again per request (a mismatch is recorded).
"""

from __future__ import annotations

import dataclasses

from .backend import ServingRequest

_SENTINEL = "\x00moeperf-content\x00"


def _template_parts(tokenizer) -> tuple[str, str] | None:
    """(header, trailer) around one user turn's content, generation prompt included."""
    try:
        text = tokenizer.apply_chat_template([{"role": "user", "content": _SENTINEL}], add_generation_prompt=True,
                                             tokenize=False)
    except (ValueError, TypeError, AttributeError):  # no chat template
        return None
    if text.count(_SENTINEL) != 1:
        return None
    header, trailer = text.split(_SENTINEL)
    return header, trailer


def _ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def attach_prompts(requests, tokenizer) -> list[ServingRequest]:
    """Each request with ``prompt_text`` (when the decoded text re-tokenizes to the same ids) and
    ``messages`` (when one user turn through the chat template gives the same ids); a field that
    cannot be recovered exactly stays None, and the backend says which API to use instead."""
    parts = _template_parts(tokenizer)
    out = []
    for req in requests:
        ids = list(req.prompt_ids)
        text = req.prompt_text
        if text is None:
            decoded = tokenizer.decode(ids, skip_special_tokens=False)
            text = decoded if _ids(tokenizer, decoded) == ids else None
        messages = req.messages
        if messages is None and text is not None and parts is not None:
            header, trailer = parts
            if text.startswith(header) and text.endswith(trailer) and len(text) >= len(header) + len(trailer):
                candidate = ({"role": "user", "content": text[len(header):len(text) - len(trailer)]},)
                rendered = tokenizer.apply_chat_template(list(candidate), add_generation_prompt=True, tokenize=False)
                if _ids(tokenizer, rendered) == ids:
                    messages = candidate
        out.append(dataclasses.replace(req, prompt_text=text, messages=messages))
    return out
