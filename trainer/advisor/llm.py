"""The Claude advisor: one Messages API call with one forced tool.

The SDK reads ``ANTHROPIC_API_KEY`` and ``ANTHROPIC_BASE_URL`` (a proxy or
gateway) from the environment itself; Tiller passes neither on, so the key
stays in the environment and never reaches the store, a report, a log or the
page. Every failure becomes an ``AdvisorError`` with a message for the user.
A gateway may quote the key back: every message and reply that leaves the SDK
call here goes through ``redact`` first, so nothing downstream can carry it.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict
from urllib.parse import urlsplit

from tiller.trainer.advisor.context import RunContext, context_payload
from tiller.trainer.advisor.redact import redact, redact_data, secret_values
from tiller.trainer.advisor.types import TOOL, TOOL_NAME, Advice, AdvisorError, Suggestion, parse_tool_input

DEFAULT_MODEL = "claude-sonnet-5-5"
MODEL_ENV = "TILLER_LLM_MODEL"
TIMEOUT_ENV = "TILLER_LLM_TIMEOUT"
KEY_ENV = "ANTHROPIC_API_KEY"
DEFAULT_TIMEOUT_S = 60.0
MAX_TOKENS = 4096

SYSTEM_PROMPT = """\
You are an experienced deep-learning engineer advising on a PyTorch training run that is in \
progress. You receive the run as JSON: its config, the keys that may change mid-run with their \
types and bounds, the metrics of every epoch, the earlier config changes and how validation \
metrics moved after each, the latest epoch's per-class recall and confusion matrix, class counts, \
and sometimes a question from the user.

Judge the run (underfitting, overfitting, plateau, divergence, class imbalance, batch and \
learning-rate settings) and answer with the suggest_config_changes tool:
- analysis: a short Markdown assessment that cites the numbers and answers the user's question \
if there is one;
- suggestions: the changes worth making now, at most four, each with the parameter, its current \
value, the new value and the reason. Use only keys listed in adjustable_keys, values of the \
listed type within the bounds, and the exact class names for class_weights. Suggest nothing \
when the run is healthy.
Changes apply at the next epoch boundary. Prefer one decisive change to many small ones."""


def model_name() -> str:
    return os.environ.get(MODEL_ENV, "").strip() or DEFAULT_MODEL


def has_key() -> bool:
    return bool(os.environ.get(KEY_ENV, "").strip())


def timeout_seconds() -> float:
    """``TILLER_LLM_TIMEOUT`` in seconds (default 60); ``AdvisorError`` unless a positive finite number."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise AdvisorError(f"{TIMEOUT_ENV} is {raw!r}: it must be a positive number of seconds, such as 60 "
                           f"(unset, it is {DEFAULT_TIMEOUT_S:g}); nothing was asked")
    return seconds


class ClaudeAdvisor:
    """Asks Claude; ``max_retries`` are the SDK's own (with backoff) on 429, 5xx and timeouts.

    The environment (key, timeout) is read when asking, not when built, so a bad
    setting is an ``AdvisorError`` where the caller already expects one.
    """

    def __init__(self, model: str | None = None, *, timeout: float | None = None, max_retries: int = 2):
        self.model = model or model_name()
        self.timeout = timeout
        self.max_retries = max_retries

    @property
    def name(self) -> str:
        return self.model

    def advise(self, ctx: RunContext) -> Advice:
        """Claude's advice, with any echo of the key redacted; ``AdvisorError`` (also redacted) on failure."""
        secrets = secret_values()
        outcome = self._ask(ctx)
        if isinstance(outcome, str):
            # Raised here, outside any ``except``: the SDK's exception (whose text may quote the key)
            # is not kept as this error's context, so no traceback or repr can show it.
            raise AdvisorError(redact(outcome, secrets))
        return Advice(analysis=redact(outcome.analysis, secrets), advisor=outcome.advisor,
                      suggestions=[Suggestion(**redact_data(asdict(s), secrets)) for s in outcome.suggestions])

    def _ask(self, ctx: RunContext) -> Advice | str:
        """The advice, or the message saying why there is none."""
        if not has_key():
            return f"no API key: set {KEY_ENV} in the environment of this process, or use the offline advisor"
        try:
            timeout = self.timeout if self.timeout is not None else timeout_seconds()
        except AdvisorError as exc:
            return str(exc)
        content = json.dumps(context_payload(ctx), ensure_ascii=False)
        import anthropic  # here, not at the top: the SDK takes seconds to import and the offline path needs none

        client = None
        try:
            client = anthropic.Anthropic(timeout=timeout, max_retries=self.max_retries)
            raw = client.messages.with_raw_response.create(
                model=self.model,
                max_tokens=MAX_TOKENS,
                system=SYSTEM_PROMPT,
                tools=[TOOL],
                tool_choice={"type": "tool", "name": TOOL_NAME},
                messages=[{"role": "user", "content": content}],
            )
            return self._advice_from(raw, endpoint(client))
        except AdvisorError as exc:
            return str(exc)
        except anthropic.APIError as exc:
            return self._explain(exc, timeout, endpoint(client))
        except Exception as exc:  # noqa: BLE001 - the SDK's own surprises become a message, never a traceback
            return f"the Anthropic SDK failed ({type(exc).__name__}: {exc}); nothing was changed"
        finally:
            if client is not None:
                client.close()

    def _advice_from(self, raw, base_url: str) -> Advice:
        content_type = raw.headers.get("content-type", "").split(";")[0].strip() or "no content type"
        not_the_api = (f"the endpoint at {base_url} did not answer like the Anthropic API (got {{}}) — check "
                       "ANTHROPIC_BASE_URL; nothing was changed")
        if "json" not in content_type:
            raise AdvisorError(not_the_api.format(content_type))
        try:
            message = raw.parse()
        except ValueError:  # JSON that does not parse
            raise AdvisorError(not_the_api.format(f"{content_type} that is not valid JSON")) from None
        if not isinstance(getattr(message, "content", None), list):
            raise AdvisorError(not_the_api.format(f"{content_type} without a message"))
        calls = [block for block in message.content
                 if getattr(block, "type", None) == "tool_use" and getattr(block, "name", None) == TOOL_NAME]
        if not calls:
            raise AdvisorError(f"{self.model} answered without the {TOOL_NAME} tool call (stop reason: "
                               f"{message.stop_reason}); nothing was changed")
        if message.stop_reason == "max_tokens":
            raise AdvisorError(f"{self.model}'s answer was cut off at {MAX_TOKENS} tokens; nothing was changed")
        return parse_tool_input(calls[0].input, advisor=self.model)

    def _explain(self, exc, timeout: float, base_url: str) -> str:
        import anthropic

        tries = f"after {self.max_retries + 1} tries" if self.max_retries else "on the first try"
        if isinstance(exc, anthropic.APITimeoutError):
            return f"Claude did not answer within {timeout:g} s ({tries}); nothing was changed"
        if isinstance(exc, anthropic.APIConnectionError):
            return f"could not reach the Anthropic API at {exc.request.url.host} ({tries}); nothing was changed"
        status = getattr(exc, "status_code", None)
        detail = _api_message(exc)
        if isinstance(exc, anthropic.AuthenticationError):
            return f"the Anthropic API refused the key (401: {detail}); check {KEY_ENV}. Nothing was changed"
        if isinstance(exc, anthropic.PermissionDeniedError):
            return f"the key may not use {self.model} (403: {detail}); nothing was changed"
        if isinstance(exc, anthropic.NotFoundError):
            return self._explain_not_found(exc, detail, base_url)
        if isinstance(exc, anthropic.RateLimitError):
            return f"the Anthropic API is rate-limiting this key (429, {tries}); try again in a minute. " \
                   "Nothing was changed"
        if status is not None and status >= 500:
            return f"the Anthropic API failed (HTTP {status}, {tries}): {detail}. Nothing was changed"
        return f"the Anthropic API refused the request (HTTP {status}): {detail}. Nothing was changed"

    def _explain_not_found(self, exc, detail: str, base_url: str) -> str:
        """A 404 is an unknown model only when the API's error says so; otherwise the URL is wrong."""
        error = _api_error(exc)
        if error.get("type") == "not_found_error" and ("model" in detail.lower() or self.model in detail):
            return f"unknown model {self.model!r} (404: {detail}); set {MODEL_ENV} to a model your key may " \
                   "use. Nothing was changed"
        return (f"the endpoint at {base_url} has no {exc.request.url.path} (HTTP 404: {detail}) — check "
                "ANTHROPIC_BASE_URL: it names the API's root, such as https://api.anthropic.com, without /v1. "
                "Nothing was changed")


def endpoint(client) -> str:
    """Where the SDK sends requests, for messages: no user, password or query (they may hold a token)."""
    url = urlsplit(str(client.base_url))
    host = url.hostname or ""
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    port = f":{url.port}" if url.port else ""
    return redact(f"{url.scheme}://{host}{port}{url.path}".rstrip("/"))


def _api_error(exc) -> dict:
    """The ``error`` object of the API's JSON error body, or ``{}``."""
    body = getattr(exc, "body", None)
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _api_message(exc) -> str:
    """The API's own one-line error message, never the request (which carries the key in a header)."""
    message = _api_error(exc).get("message")
    if isinstance(message, str):
        return message[:300]
    response = getattr(exc, "response", None)
    content_type = response.headers.get("content-type", "").split(";")[0].strip() if response is not None else ""
    body = getattr(exc, "body", None)
    if content_type == "text/plain" and isinstance(body, str) and body.strip():
        return " ".join(body.split())[:300]  # a gateway's own one-line reason
    return f"a {content_type or 'bare'} reply, not an API error"
