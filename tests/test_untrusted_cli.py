"""The CLI prints untrusted text (run names, reasons, events, advice) without letting it drive the
terminal, and change reports carry nothing a Markdown viewer would load or run.

The real CLI runs as a subprocess (``python -m tiller``) against a store seeded with hostile
text (tests/hostile.py); ``tiller suggest`` gets a hostile analysis from the fake Anthropic API.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest
from markdown_it import MarkdownIt

from tiller.store import Store
from tests.anthropic_fake import FakeAnthropic, Reply, tool_message
from tests.hostile import RICH_MARKUP, RUN, TERMINAL, markdown_payloads, seed_hostile_runs
from tiller.trainer.advisor.report import render_report

TRAP = "127.0.0.1:9"
# What a terminal acts on: C0 controls but tab and newline (ESC, BEL, CR, BS…), DEL, C1, bidi controls.
TERMINAL_ACTIVE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile") / "runs"
    store = Store(folder)
    seed_hostile_runs(store, TRAP)
    store.close()
    return folder


def tiller(runs_dir, *argv, env: dict | None = None) -> str:
    result = subprocess.run([sys.executable, "-m", "tiller", "--runs-dir", str(runs_dir), *argv],
                            capture_output=True, timeout=120, env={**os.environ, **(env or {})})
    assert result.returncode == 0, result.stderr.decode()
    text = result.stdout.decode("utf-8")
    assert not TERMINAL_ACTIVE.search(text), [m.group() for m in TERMINAL_ACTIVE.finditer(text)][:10]
    return text


@pytest.mark.parametrize("argv", [["runs"], ["runs", "--json"], ["show", RUN], ["show", RUN, "--json"]])
def test_runs_and_show_print_no_control_characters(runs_dir, argv):
    out = tiller(runs_dir, *argv)
    assert "hidden" in out and "[red]red[/red]" in out  # the names are there, as text (a title set is dropped)


def test_json_output_keeps_the_data(runs_dir):
    import json

    (record,) = [r for r in json.loads(tiller(runs_dir, "runs", "--json")) if r["id"] == RUN]
    assert TERMINAL.replace("TRAP", TRAP) in record["name"]  # escaped in the output, whole once parsed


def test_the_terminal_table_shows_names_as_text_not_markup(runs_dir):
    """FORCE_COLOR makes rich draw its coloured table into the pipe: its own colour codes are fine,
    the name's sequences and markup are not."""
    result = subprocess.run([sys.executable, "-m", "tiller", "--runs-dir", str(runs_dir), "runs"],
                            capture_output=True, timeout=120, env={**os.environ, "FORCE_COLOR": "1", "COLUMNS": "400"})
    out = result.stdout.decode("utf-8")
    assert "\x1b[3" in out  # rich's colours: a terminal table was drawn
    own_colours = re.sub(r"\x1b\[[0-9;]*m", "", out)
    assert not TERMINAL_ACTIVE.search(own_colours)
    assert "\x1b]" not in out and "\x1b[2J" not in out and "\x1b[8m" not in out
    assert RICH_MARKUP in own_colours  # printed, not read as rich markup


def test_suggest_prints_a_hostile_analysis_inert(runs_dir):
    analysis = TERMINAL.replace("TRAP", TRAP) + "\n" + markdown_payloads(TRAP)
    with FakeAnthropic() as server:
        server.reply(Reply(body=tool_message({"analysis": analysis, "suggestions": [
            {"parameter": "learning_rate", "current_value": 0.0005, "suggested_value": 0.0002,
             "reason": TERMINAL.replace("TRAP", TRAP)}]})))
        env = {"ANTHROPIC_API_KEY": "sk-ant-test", "ANTHROPIC_BASE_URL": server.url}
        out = tiller(runs_dir, "suggest", RUN, env=env)
        assert "hidden" in out and "esrever" in out
        server.reply(Reply(body=tool_message({"analysis": analysis, "suggestions": []})))
        tiller(runs_dir, "suggest", RUN, "--json", env=env)


# ------------------------------------------------------------------------- reports

VIEWER = MarkdownIt("commonmark").enable(["table", "strikethrough"])
VIEWER.validateLink = lambda url: True  # as a viewer may: a data: or javascript: link is a link


def live_parts(markdown: str) -> list[str]:
    found = []
    for token in VIEWER.parse(markdown):
        for t in [token, *(token.children or [])]:
            if t.type in ("image", "html_inline", "html_block"):
                found.append(f"{t.type}: {t.content}")
            if t.type == "link_open" and (t.markup == "autolink" or not re.match(r"https?://", t.attrs["href"])):
                found.append(f"link: {t.attrs['href']}")
    return found


def test_a_written_report_loads_nothing(runs_dir):
    report = (runs_dir / RUN / "reports" / "v002.md").read_text(encoding="utf-8")
    assert "html-img" in report and "**loss**" in report  # the analysis is in it, formatted
    assert live_parts(report) == []
    assert not TERMINAL_ACTIVE.search(report)


def test_every_untrusted_field_of_a_report_is_inert():
    hostile = markdown_payloads(TRAP) + "\n" + TERMINAL.replace("TRAP", TRAP)
    advice = SimpleNamespace(analysis=hostile, advisor=hostile, suggestions=[], id=hostile, epoch=3, asked_by=hostile,
                             question=hostile)
    text = render_report(report_id=hostile, run_id=hostile, version=2, epoch=3, source=hostile, reason=hostile,
                         change_id=hostile, diff={hostile: ["`a`", hostile]}, before={hostile: hostile},
                         after={"x": "```\n![](http://127.0.0.1:9/config)"}, metrics={hostile: 1.0}, advice=advice)
    assert live_parts(text) == []
    assert not TERMINAL_ACTIVE.search(text)


def test_the_training_display_prints_lines_inert():
    """tiller train's lines (a version's reason, a refused edit's message) in a terminal and in a log."""
    from io import StringIO

    from rich.console import Console

    from tiller.trainer.engine.progress import LineReporter, LiveReporter

    line = "v2 applied: " + TERMINAL.replace("TRAP", TRAP) + " :smile:"
    screen = StringIO()
    with LiveReporter(Console(file=screen, force_terminal=True, width=200)) as live:
        live.say(line)
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())  # rich's own cursor and colour codes
    assert not TERMINAL_ACTIVE.search(shown.replace("\r", ""))
    assert "\x1b]" not in screen.getvalue() and "[red]red[/red]" in shown and ":smile:" in shown
    logged = []
    LineReporter(logged.append).say(line)
    assert not TERMINAL_ACTIVE.search(logged[0]) and "hidden" in logged[0]


def test_error_messages_quote_untrusted_text_inert(capsys):
    # fail() quotes names, keys and values taken from files and the store: they must not drive the terminal.
    from tiller.trainer.cli import commands as cli

    with pytest.raises(SystemExit):
        cli.fail(f"unknown key {TERMINAL}")
    printed = capsys.readouterr().err
    assert printed.startswith("tiller: unknown key") and not TERMINAL_ACTIVE.search(printed)
