"""Keeping the API credentials out of everything the advisor passes on.

A gateway or proxy may echo the key it was sent (``invalid x-api-key sk-ant-…``),
whole or in part, raw, JSON-escaped or URL-encoded. Whatever leaves the SDK call
(error text, the reply itself) goes through ``redact`` first, so the CLI, the
page, events, ``state.json``, checkpoints and reports never see the key.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Iterable
from urllib.parse import quote, quote_plus

# What the anthropic SDK reads as credentials from the environment.
SECRET_ENV_VARS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")
REDACTED = "[redacted]"
# A run of this many characters of a secret counts as an echo of it: long enough that
# ordinary text never matches by chance, short enough to catch a key cut in half.
ECHO_CHARS = 12
# Values shorter than this are placeholders, not credentials; hunting them would garble words.
MIN_SECRET_CHARS = 8


def secret_values() -> list[str]:
    """The credentials in this process's environment, as the SDK would send them."""
    values = (os.environ.get(name, "").strip() for name in SECRET_ENV_VARS)
    return [v for v in values if len(v) >= MIN_SECRET_CHARS]


def encoded_forms(secret: str) -> set[str]:
    """The ways a reply may spell ``secret``: raw, JSON-escaped (once or twice), URL-encoded."""
    json_once = json.dumps(secret)[1:-1]
    forms = {secret, json_once, json_once.replace("/", "\\/"), json.dumps(json_once)[1:-1],
             json.dumps(secret, ensure_ascii=False)[1:-1], quote(secret, safe=""), quote_plus(secret, safe=""),
             quote(secret)}
    forms |= {re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), form) for form in forms}
    return forms


def redact(text: str, secrets: Iterable[str] | None = None) -> str:
    """``text`` with every echo of a secret, whole or a long enough part, replaced by ``[redacted]``."""
    secrets = secret_values() if secrets is None else [s for s in secrets if len(s) >= MIN_SECRET_CHARS]
    if not text or not secrets:
        return text
    spans: list[tuple[int, int]] = []
    for secret in secrets:
        for form in encoded_forms(secret):
            spans += _echo_spans(text, form)
    return _replace_spans(text, spans)


def redact_data(value: Any, secrets: Iterable[str] | None = None) -> Any:
    """``value`` (JSON-like: text, numbers, lists, dicts) with ``redact`` applied to every text in it."""
    secrets = secret_values() if secrets is None else list(secrets)
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, list):
        return [redact_data(item, secrets) for item in value]
    if isinstance(value, dict):
        return {redact_data(k, secrets): redact_data(v, secrets) for k, v in value.items()}
    return value


def _echo_spans(text: str, form: str) -> list[tuple[int, int]]:
    """Where ``text`` holds ``form`` whole, or any ``ECHO_CHARS`` characters of it in a row."""
    if len(form) <= ECHO_CHARS:
        return [(m.start(), m.end()) for m in re.finditer(re.escape(form), text)]
    pieces = {form[i:i + ECHO_CHARS] for i in range(len(form) - ECHO_CHARS + 1)}
    return [(i, i + ECHO_CHARS) for i in range(len(text) - ECHO_CHARS + 1) if text[i:i + ECHO_CHARS] in pieces]


def _replace_spans(text: str, spans: list[tuple[int, int]]) -> str:
    """Overlapping spans merge, so a whole key becomes one ``[redacted]``."""
    if not spans:
        return text
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    out, last = [], 0
    for start, end in merged:
        out += [text[last:start], REDACTED]
        last = end
    return "".join(out + [text[last:]])
