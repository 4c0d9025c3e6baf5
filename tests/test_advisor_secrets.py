"""A gateway that echoes the API key in its refusal: the real CLI and a real
autopilot run print and store the refusal, never the key (issue 17, item 5);
and a bad TILLER_LLM_TIMEOUT is a message from the real CLI, not a traceback
(item 14)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.anthropic_fake import FakeAnthropic, Reply, error_body, key_echo, key_leaks
from tests.test_advisor_live import read_state, stop
from tests.test_advisor_llm import make_run
from tests.test_live_steering import ROOT, start_and_finish_epoch_1, wait_for
from tiller.trainer.advisor.redact import REDACTED, redact, redact_data

KEY = "sk-ant-api03-Gateway/Echo+Key=9f8e7d6c5b4a3210ZYXW"  # "/", "+", "=" change when escaped or encoded


@pytest.mark.parametrize("echo", [
    KEY, f"Bearer {KEY}.", f'{{"key": "{KEY}"}}', KEY.replace("/", "\\/"), "key=" + KEY.replace("/", "%2F")
    .replace("+", "%2B").replace("=", "%3D"), "key=" + KEY.replace("/", "%2f").replace("+", "%2b").replace("=", "%3d"),
    KEY[:30], KEY[-14:], KEY[10:24],
])
def test_redact_finds_the_key_whole_encoded_or_in_part(echo):
    redacted = redact(f"gateway says: {echo} (sorry)", [KEY])
    assert key_leaks(redacted, KEY) == [] and REDACTED in redacted and redacted.startswith("gateway says: ")


def test_redact_leaves_ordinary_text_and_short_placeholders_alone():
    text = "lower the learning rate: val/loss rose from 0.31 to 0.45; key ends …ZYXW"  # a 4-character tail is fine
    assert redact(text, [KEY]) == text
    assert redact("the gw-token1 was refused", ["gw-token1"]) == "the [redacted] was refused"  # short: whole only
    assert redact("a test of the best settings", ["test"]) == "a test of the best settings"  # a placeholder
    assert redact_data({"a": [KEY, 1.5, None], KEY: True}, [KEY]) == {"a": [REDACTED, 1.5, None], REDACTED: True}


@pytest.fixture
def echoing_gateway(monkeypatch):
    """A fake Anthropic endpoint that refuses every request with a 401 quoting the key, in this environment."""
    with FakeAnthropic() as gateway:
        gateway.always = Reply(401, error_body("authentication_error", key_echo(KEY)))
        monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", gateway.url)
        monkeypatch.delenv("TILLER_LLM_TIMEOUT", raising=False)
        yield gateway


def tiller(*args: str, runs_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tiller", *args, "--runs-dir", str(runs_dir)], cwd=ROOT,
                          env=dict(os.environ), capture_output=True, text=True, timeout=120)


def leaks_under(runs_dir: Path) -> dict[str, list[str]]:
    """Every file under ``runs_dir`` (the database and its WAL, state.json, checkpoints, reports) that holds the key."""
    found = {str(path): key_leaks(path.read_bytes(), KEY) for path in runs_dir.rglob("*") if path.is_file()}
    return {path: forms for path, forms in found.items() if forms}


def the_gateway_saw_the_key(gateway: FakeAnthropic) -> bool:
    sent = [(r["headers"].get("x-api-key"), r["headers"].get("authorization", "").removeprefix("Bearer "))
            for r in gateway.requests]  # the SDK sends the key as x-api-key or as a bearer token
    return any(KEY in pair for pair in sent)


def test_tiller_suggest_prints_the_refusal_but_not_the_key(store, echoing_gateway):
    run_id = make_run(store)
    store.close()

    for args in (["suggest", run_id], ["suggest", run_id, "--json", "--apply", "-q", "why?"]):
        done = tiller(*args, runs_dir=store.runs_dir)
        assert done.returncode == 1, done.stderr
        assert key_leaks(done.stdout + done.stderr, KEY) == []
        assert "no advice: the Anthropic API refused the key (401: invalid x-api-key [redacted]" in done.stderr
        assert "Traceback" not in done.stderr
    assert the_gateway_saw_the_key(echoing_gateway)  # the key went where it must, and came back in the 401
    assert leaks_under(store.runs_dir) == {}


def test_the_autopilot_keeps_the_refusal_but_not_the_key(tmp_path, echoing_gateway):
    runs_dir = tmp_path / "runs"
    proc, store, run_id, config_path = start_and_finish_epoch_1(
        runs_dir, "num_epochs=10000", "autopilot=true", "autopilot_every=1")  # autopilot_advisor auto: Claude
    try:
        refused = "the advisor failed (the Anthropic API refused the key (401: invalid x-api-key "
        wait_for(lambda: refused in read_state(config_path).get("autopilot", {}).get("last", ""),
                 "the autopilot's failed step in state.json", proc)
        state = read_state(config_path)
        assert key_leaks(state["autopilot"]["last"], KEY) == [] and "[redacted]" in state["autopilot"]["last"]
        failed_at = state["epoch"]
        # The checkpoint of a later epoch carries the autopilot's log too.
        wait_for(lambda: read_state(config_path).get("epoch", 0) >= failed_at + 2, "two more epochs", proc)
        events = store.events(run_id)
        assert any(refused in message for message in events["message"]), list(events["message"])
        shown = tiller("show", run_id, runs_dir=runs_dir)
        assert "Autopilot after epoch" in shown.stdout and key_leaks(shown.stdout + shown.stderr, KEY) == []
    finally:
        output = stop(proc, config_path)
    store.close()

    assert the_gateway_saw_the_key(echoing_gateway)
    assert list(runs_dir.glob("*/checkpoints/last.pt")), "no checkpoint to look into"
    assert key_leaks(output, KEY) == []
    assert leaks_under(runs_dir) == {}


@pytest.mark.parametrize("raw", ["abc", "0", "nan"])
def test_tiller_suggest_with_a_bad_timeout_says_what_is_accepted(store, echoing_gateway, monkeypatch, raw):
    monkeypatch.setenv("TILLER_LLM_TIMEOUT", raw)
    run_id = make_run(store)
    store.close()
    done = tiller("suggest", run_id, runs_dir=store.runs_dir)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"tiller: no advice: TILLER_LLM_TIMEOUT is '{raw}': it must be a positive number of seconds" in done.stderr
    assert echoing_gateway.requests == []
