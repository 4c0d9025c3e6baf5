"""The Claude advisor: one Messages API call with one forced tool.

The SDK reads ``ANTHROPIC_API_KEY`` and ``ANTHROPIC_BASE_URL`` (a proxy or
gateway) from the environment itself; Tiller passes neither on, so the key
stays in the environment and never reaches the store, a report, a log or the
page. Every failure becomes an ``AdvisorError`` with a message for the user.
"""

from __future__ import annotations

import json
import os

from trainer.advisor.context import RunContext, context_payload
from trainer.advisor.types import TOOL, TOOL_NAME, Advice, AdvisorError, parse_tool_input

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
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        return float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        raise AdvisorError(f"{TIMEOUT_ENV} must be a number of seconds, not {raw!r}") from None


class ClaudeAdvisor:
    """Asks Claude; ``max_retries`` are the SDK's own (with backoff) on 429, 5xx and timeouts."""

    def __init__(self, model: str | None = None, *, timeout: float | None = None, max_retries: int = 2):
        self.model = model or model_name()
        self.timeout = timeout if timeout is not None else timeout_seconds()
        self.max_retries = max_retries

    @property
    def name(self) -> str:
        return self.model

    def advise(self, ctx: RunContext) -> Advice:
        if not has_key():
            raise AdvisorError(f"no API key: set {KEY_ENV} in the environment of this process, or use the "
                               "offline advisor")
        import anthropic  # here, not at the top: the SDK takes seconds to import and the offline path needs none

        client = anthropic.Anthropic(timeout=self.timeout, max_retries=self.max_retries)
        try:
            message = client.messages.create(
                model=self.model,
                max_tokens=MAX_TOKENS,
                system=SYSTEM_PROMPT,
                tools=[TOOL],
                tool_choice={"type": "tool", "name": TOOL_NAME},
                messages=[{"role": "user", "content": json.dumps(context_payload(ctx), ensure_ascii=False)}],
            )
        except anthropic.APIError as exc:
            raise AdvisorError(self._explain(exc)) from None
        finally:
            client.close()
        return self._advice_from(message)

    def _advice_from(self, message) -> Advice:
        calls = [block for block in message.content if block.type == "tool_use" and block.name == TOOL_NAME]
        if not calls:
            raise AdvisorError(f"{self.model} answered without the {TOOL_NAME} tool call (stop reason: "
                               f"{message.stop_reason}); nothing was changed")
        if message.stop_reason == "max_tokens":
            raise AdvisorError(f"{self.model}'s answer was cut off at {MAX_TOKENS} tokens; nothing was changed")
        return parse_tool_input(calls[0].input, advisor=self.model)

    def _explain(self, exc) -> str:
        import anthropic

        tries = f"after {self.max_retries + 1} tries" if self.max_retries else "on the first try"
        if isinstance(exc, anthropic.APITimeoutError):
            return f"Claude did not answer within {self.timeout:g} s ({tries}); nothing was changed"
        if isinstance(exc, anthropic.APIConnectionError):
            return f"could not reach the Anthropic API at {exc.request.url.host} ({tries}); nothing was changed"
        status = getattr(exc, "status_code", None)
        detail = _api_message(exc)
        if isinstance(exc, anthropic.AuthenticationError):
            return f"the Anthropic API refused the key (401: {detail}); check {KEY_ENV}. Nothing was changed"
        if isinstance(exc, anthropic.PermissionDeniedError):
            return f"the key may not use {self.model} (403: {detail}); nothing was changed"
        if isinstance(exc, anthropic.NotFoundError):
            return f"unknown model {self.model!r} (404: {detail}); set {MODEL_ENV}. Nothing was changed"
        if isinstance(exc, anthropic.RateLimitError):
            return f"the Anthropic API is rate-limiting this key (429, {tries}); try again in a minute. " \
                   "Nothing was changed"
        if status is not None and status >= 500:
            return f"the Anthropic API failed (HTTP {status}, {tries}): {detail}. Nothing was changed"
        return f"the Anthropic API refused the request (HTTP {status}): {detail}. Nothing was changed"


def _api_message(exc) -> str:
    """The API's own one-line error message, never the request (which carries the key in a header)."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"][:300]
    return type(exc).__name__
