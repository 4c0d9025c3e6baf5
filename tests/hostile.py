"""Hostile text for the tests of untrusted text: names, reasons, messages and advice that try
to make a browser fetch (``TRAP`` is replaced by a local recording server's address), a link
go to ``data:``, a chart draw HTML, or a terminal clear, retitle, hide or reorder.

``seed_hostile_runs`` writes two finished runs holding them into a store, as trainers would.
"""

from __future__ import annotations

from pathlib import Path

from tiller.store import Store
from tiller.trainer.advisor import ask
from tiller.trainer.advisor.report import write_change_report
from tiller.trainer.advisor.types import Advice, Suggestion
from tiller.trainer.steering.config import TrainConfig
from tiller.trainer.steering.live_config import CONFIG_FILENAME, render_live_file

RUN, OTHER = "mlp_20260101_000000", "mlp_20260101_000001"

RICH_MARKUP = "[red]r[/red][link=x]l[/link]"  # short: the terminal's table cuts names at 40 columns
# A chart's name: a live link and text over the plot.
PLOT_NAME = '<a href="http://TRAP/plot-link">x</a><b style="font-size:120px">big</b>'
# A terminal's: clear the screen, set the title, a hyperlink, hidden text, overwrite, bidi, C1 CSI, rich markup.
TERMINAL = ("\x1b[2J\x1b[H\x1b]0;pwned\x07\x1b]8;;http://TRAP/osc\x1b\\osc-link\x1b]8;;\x1b\\"
            "\x1b[8mhidden\x1b[0m fake\roverwrite\u202eesrever\u202c\x9b31mc1 [red]red[/red] [link=http://TRAP/rich]r[/link]")


def markdown_payloads(trap: str) -> str:
    """Markdown that made (or could make) a browser load ``trap`` or link to ``data:``."""
    return "\n".join([
        "## Assessment",
        "The **loss** plateaus; see [the docs](https://example.com/docs).",
        "",
        "```", "fenced", "~~~", "```", f"![](http://{trap}/mismatched-fence)",
        "",
        "![ref][1]", "", f"[1]: http://{trap}/reference-image",
        "",
        f"<img src=http://{trap}/html-img> <http://{trap}/autolink>",
        "",
        f"<div><img src='http://{trap}/block-img'></div>",
        "",
        "[click me](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==) "
        "[js](javascript:alert(1)) [png](data:image/png;base64,iVBORw0KGgo=)",
        "",
        f"&lt;img src=http://{trap}/entity&gt; :red[colour] $\\href{{http://{trap}/katex}}{{x}}$",
    ])


def inline_payload(trap: str) -> str:
    """One line of every trick, for names, reasons and event messages."""
    return (f"![](http://{trap}/inline-img) <img src=http://{trap}/inline-html> <http://{trap}/inline-auto> "
            f"[d](data:text/html,hi) {PLOT_NAME.replace('TRAP', trap)} {TERMINAL.replace('TRAP', trap)}")


class HostileAdvisor:
    """Answers with ``analysis`` and one valid suggestion whose reason is hostile too."""

    name = "hostile"

    def __init__(self, analysis: str, reason: str):
        self.analysis, self.reason = analysis, reason

    def advise(self, ctx):
        lr = ctx.config["learning_rate"]
        return Advice(analysis=self.analysis, advisor="hostile", suggestions=[
            Suggestion("learning_rate", lr, lr / 2, self.reason)])


def seed_hostile_runs(store: Store, trap: str) -> None:
    """Two finished runs named with every trick; the first with a hostile reason, event, advice and
    two reports (one written by Tiller, one stored raw as an older or tampered report would be)."""
    config = TrainConfig(num_epochs=4).model_dump()
    inline = inline_payload(trap)
    for run_id, name in ((RUN, f"{PLOT_NAME.replace('TRAP', trap)} {TERMINAL.replace('TRAP', trap)}"),
                         (OTHER, f"{RICH_MARKUP} {PLOT_NAME.replace('TRAP', trap)}")):
        store.create_run(model="mlp", dataset="digits", name=name, run_id=run_id)
        store.add_config_version(run_id, config, source="cli", reason="initial config", epoch=1)
        for epoch in range(1, 5):
            store.log_metrics(run_id, epoch, {"train/loss": 1 / epoch, "val/loss": 1.2 / epoch,
                                              "train/accuracy": 0.5 + epoch / 10, "val/accuracy": 0.4 + epoch / 10,
                                              "lr": config["learning_rate"]})
        run_dir = Path(store.runs_dir) / run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / CONFIG_FILENAME).write_text(render_live_file(config), encoding="utf-8")
    record = ask(store, RUN, inline, advisor=HostileAdvisor(markdown_payloads(trap), inline))
    changed = {**config, "learning_rate": config["learning_rate"] / 2}
    version = store.add_config_version(RUN, changed, source="llm", reason=inline, epoch=3,
                                       change_id=f"{record.id}#1")
    write_change_report(store, RUN, version, Path(store.runs_dir) / RUN)
    store.record_report(RUN, report_id=f"{RUN}_raw", version=version + 1, epoch=4,
                        markdown=markdown_payloads(trap), path=str(Path(store.runs_dir) / RUN / "reports" / "raw.md"))
    store.add_event(RUN, "error", inline, epoch=4)
    store.add_event(RUN, "info", markdown_payloads(trap), epoch=4)
    for run_id in (RUN, OTHER):
        store.update_run(run_id, status="finished")
