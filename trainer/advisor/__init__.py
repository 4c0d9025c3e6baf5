"""The advisor: suggestions for a running run, from Claude or from offline rules.

    from tiller.trainer.advisor import ask, apply_advice
    advice = ask(store, run_id, "why is val loss rising?", offline=True)
    apply_advice(store, advice, [1, 2])   # applied at the run's next epoch

Modules: ``context`` (what the advisor reads), ``llm`` (Claude, forced tool
use), ``rules`` (the offline advisor), ``checks`` (the trainer's schema judges
each suggestion), ``service`` (ask / apply / revert), ``report`` (seed 003's
adjustment report), ``autopilot`` (asking and applying within the user's limits).
"""

from tiller.trainer.advisor.service import (
    AdviceRecord, Advisor, apply_advice, ask, choose_advisor, load_advice, revert_version, run_advice,
)
from tiller.trainer.advisor.types import Advice, AdvisorError, CheckedSuggestion, Suggestion

__all__ = ["Advice", "AdviceRecord", "Advisor", "AdvisorError", "CheckedSuggestion", "Suggestion", "apply_advice",
           "ask", "choose_advisor", "load_advice", "revert_version", "run_advice"]
