"""What every advisor returns, and the one tool through which Claude returns it.

The shape is seed 003's JSON: an analysis in Markdown and a list of
suggestions, each ``{"parameter", "current_value", "suggested_value", "reason"}``.
Whatever produced it, an advisor's output is data: it is parsed here, checked
against the trainer's schema (``tiller.trainer.advisor.checks``) and never executed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

TOOL_NAME = "suggest_config_changes"

SUGGESTION_SCHEMA = {
    "type": "object",
    "properties": {
        "parameter": {"type": "string", "description": "a config key the run may change (listed as adjustable)"},
        "current_value": {"description": "the value the run has now"},
        "suggested_value": {"description": "the new value, of the key's JSON type (number, boolean, string, "
                                           "object), within its bounds"},
        "reason": {"type": "string", "description": "why, in one or two sentences, citing the metrics"},
    },
    "required": ["parameter", "current_value", "suggested_value", "reason"],
}

TOOL = {
    "name": TOOL_NAME,
    "description": "Report your analysis of the training run and the config changes you suggest. "
                   "Suggest nothing when the run is healthy.",
    "input_schema": {
        "type": "object",
        "properties": {
            "analysis": {"type": "string", "description": "your assessment of the run, in Markdown"},
            "suggestions": {"type": "array", "items": SUGGESTION_SCHEMA, "maxItems": 8},
        },
        "required": ["analysis", "suggestions"],
    },
}

MAX_ANALYSIS_CHARS = 20_000
MAX_SUGGESTIONS = 8
MAX_REASON_CHARS = 1_000


class AdvisorError(Exception):
    """Asking the advisor failed; nothing was changed. The message says why, for the user."""


@dataclass(frozen=True)
class Suggestion:
    parameter: str
    current_value: Any
    suggested_value: Any
    reason: str


@dataclass(frozen=True)
class Advice:
    analysis: str  # Markdown
    suggestions: list[Suggestion]
    advisor: str  # the model that answered, or "offline rules"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CheckedSuggestion:
    """A suggestion after the trainer's schema has looked at it."""

    number: int  # 1-based, stable within its advice: the suggestion id is "<advice id>#<number>"
    parameter: str
    current_value: Any  # what the run really has (not what the advisor said it has)
    suggested_value: Any
    reason: str
    problem: str = ""  # why it cannot be applied; empty when it can
    notes: list[str] = field(default_factory=list)  # e.g. the advisor misread the current value

    @property
    def ok(self) -> bool:
        return not self.problem

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CheckedSuggestion":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def parse_tool_input(data: Any, advisor: str) -> Advice:
    """An ``Advice`` from the tool call's input, or ``AdvisorError`` saying what is malformed."""
    if not isinstance(data, dict):
        raise AdvisorError(f"the advisor's reply is malformed: the tool input is {type(data).__name__}, "
                           "not an object")
    analysis, raw = data.get("analysis"), data.get("suggestions")
    if not isinstance(analysis, str):
        raise AdvisorError("the advisor's reply is malformed: 'analysis' is missing or not text")
    if not isinstance(raw, list):
        raise AdvisorError("the advisor's reply is malformed: 'suggestions' is missing or not a list")
    if len(raw) > MAX_SUGGESTIONS:
        raise AdvisorError(f"the advisor's reply is malformed: {len(raw)} suggestions (at most "
                           f"{MAX_SUGGESTIONS} are accepted)")
    suggestions = []
    for index, item in enumerate(raw, start=1):
        if not isinstance(item, dict) or not isinstance(item.get("parameter"), str) or "suggested_value" not in item:
            raise AdvisorError(f"the advisor's reply is malformed: suggestion {index} needs at least a "
                               "'parameter' (text) and a 'suggested_value'")
        suggestions.append(Suggestion(
            parameter=item["parameter"][:200],
            current_value=item.get("current_value"),
            suggested_value=item["suggested_value"],
            reason=str(item.get("reason", ""))[:MAX_REASON_CHARS],
        ))
    return Advice(analysis=analysis[:MAX_ANALYSIS_CHARS], suggestions=suggestions, advisor=advisor)
