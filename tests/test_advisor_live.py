"""The advisor against a real running trainer: advice applied at the next epoch,
a report written, reverts, the autopilot, and ``tiller suggest``; the API key
never lands anywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.anthropic_fake import FakeAnthropic, Reply, tool_message
from tests.test_live_steering import ROOT, start_and_finish_epoch_1, wait_for
from tiller.trainer.advisor import apply_advice, ask, revert_version
from tiller.trainer.advisor.llm import ClaudeAdvisor
from tiller.trainer.steering.live_config import request_control

KEY = "sk-ant-live-test-key-ABCDEF987654"


def stop(proc, config_path):
    if proc.poll() is None:
        request_control(config_path, "stop")
        proc.wait(timeout=60)
    return proc.stdout.read()


def versions_with(store, run_id, count):
    return lambda: len(store.config_versions(run_id)) >= count


def read_state(config_path) -> dict:
    try:
        return json.loads((config_path.parent / "state.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def test_claude_advice_is_applied_at_the_next_epoch_with_a_report_and_the_key_goes_nowhere(tmp_path, monkeypatch):
    runs_dir = tmp_path / "runs"
    proc, store, run_id, config_path = start_and_finish_epoch_1(runs_dir, "num_epochs=10000", "learning_rate=0.001")
    try:
        with FakeAnthropic() as fake:
            monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
            monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.url)
            fake.reply(Reply(body=tool_message({
                "analysis": "Validation loss is flat; **lower the lr**.",
                "suggestions": [
                    {"parameter": "learning_rate", "current_value": 0.001, "suggested_value": 0.0002,
                     "reason": "the val loss stopped improving"},
                    {"parameter": "img_size", "current_value": 0, "suggested_value": 64, "reason": "bigger"},
                ]})))
            record = ask(store, run_id, "why so flat?", advisor=ClaudeAdvisor("claude-live-test", max_retries=0))
        assert [s.ok for s in record.suggestions] == [True, False]
        apply_advice(store, record, [1])

        wait_for(versions_with(store, run_id, 2), "the advice is applied", proc)
        version = store.config_versions(run_id).iloc[-1]
        assert version["source"] == "llm" and version["change_id"] == f"{record.id}#1"
        assert version["diff"] == {"learning_rate": [0.001, 0.0002]}
        applied_at = int(version["epoch"])
        wait_for(lambda: read_state(config_path).get("epoch", 0) >= applied_at, "an epoch under the advice", proc)
        assert read_state(config_path)["last_epoch"]["last_lr"] == pytest.approx(0.0002)

        report_path = runs_dir / run_id / "reports" / "v002.md"
        wait_for(report_path.exists, "the report", proc)
        report = report_path.read_text()
        for expected in ("# Training adjustment report", "### learning_rate", "- **Original**: `0.001`",
                         "- **New**: `0.0002`", "- **Change type**: decrease", "**lower the lr**",
                         "**Question**: why so flat?", "claude-live-test", "| 2 | img_size | `64` | refused: ",
                         f"## Metrics at this point (epoch {applied_at - 1})", "### Before", "### After",
                         "changed **1** parameter"):
            assert expected in report, expected
        # The file is saved a moment before the store's row; wait for the row too.
        wait_for(lambda: len(store.reports(run_id)) == 1, "the report is recorded", proc)
        (stored,) = store.reports(run_id).to_dict("records")
        assert stored["markdown"] == report and stored["version"] == 2

        # Revert v2: back to v1's lr, recorded as its own version.
        revert_version(store, run_id, 2)
        wait_for(versions_with(store, run_id, 3), "the revert is applied", proc)
        reverted = store.config_versions(run_id).iloc[-1]
        assert reverted["diff"] == {"learning_rate": [0.0002, 0.001]} and reverted["change_id"] == "revert:v2"
        # The report is written from the recorded version, so it follows the record by a moment.
        wait_for((runs_dir / run_id / "reports" / "v003.md").exists, "the revert's report", proc)
    finally:
        output = stop(proc, config_path)

    store.close()
    for path in runs_dir.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    assert KEY not in output


def test_autopilot_applies_rule_advice_within_its_budget_and_can_be_turned_off(tmp_path, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    # batch 512 x accumulation 4 gives one optimizer step per epoch on 1,437 digits: the effective
    # batch rule fires. The budget of one change lets exactly one key through.
    runs_dir = tmp_path / "runs"
    proc, store, run_id, config_path = start_and_finish_epoch_1(
        runs_dir, "num_epochs=10000", "autopilot=true", "autopilot_every=1", "autopilot_max_changes=1",
        "gradient_accumulation_enabled=true", "gradient_accumulation_steps=4", "batch_size=512")
    try:
        wait_for(versions_with(store, run_id, 2), "an autopilot change", proc)
        version = store.config_versions(run_id).iloc[-1]
        assert version["source"] == "llm" and version["reason"].startswith("autopilot: offline rules")
        assert len(version["diff"]) == 1
        advice = store.advice(run_id)
        assert set(advice["asked_by"]) == {"autopilot"}
        wait_for(lambda: "budget" in read_state(config_path).get("autopilot", {}).get("last", ""),
                 "the autopilot stops at its budget", proc)
        state = read_state(config_path)["autopilot"]
        assert state["changes_made"] == 1 and state["enabled"] is True
        asked = len(store.advice(run_id))
        # Turning it off mid-run: no more steps.
        from tiller.trainer.steering.live_config import request_change
        request_change(config_path, {"autopilot": False, "autopilot_max_changes": 5}, source="user", reason="off")
        wait_for(versions_with(store, run_id, 3), "autopilot off", proc)
        off_at = int(store.config_versions(run_id).iloc[-1]["epoch"])
        wait_for(lambda: read_state(config_path).get("epoch", 0) >= off_at + 2, "two epochs without it", proc)
        assert len(store.advice(run_id)) == asked
        assert read_state(config_path)["autopilot"]["enabled"] is False
        events = " ".join(store.events(run_id)["message"])
        assert "Autopilot after epoch" in events
    finally:
        stop(proc, config_path)


def test_tiller_suggest_offline_prints_and_applies(tmp_path, monkeypatch):
    runs_dir = tmp_path / "runs"
    proc, store, run_id, config_path = start_and_finish_epoch_1(
        runs_dir, "num_epochs=10000", "gradient_accumulation_enabled=true", "gradient_accumulation_steps=4",
        "batch_size=512")
    try:
        env = {**os.environ, "ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": "http://127.0.0.1:9"}
        command = [sys.executable, "-m", "tiller", "suggest", run_id[:8], "--runs-dir", str(runs_dir),
                   "--offline", "--json", "--apply", "-q", "is the batch too large?"]
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result["advisor"] == "offline rules" and result["question"] == "is the batch too large?"
        assert "gradient_accumulation_steps" in result["applied"]
        wait_for(versions_with(store, run_id, 2), "the suggestion is applied", proc)
        assert store.config_versions(run_id).iloc[-1]["change_id"].startswith(result["id"] + "#")
        wait_for(lambda: len(store.reports(run_id)) == 1, "the report is recorded", proc)
        shown = subprocess.run([sys.executable, "-m", "tiller", "show", run_id, "--runs-dir", str(runs_dir)],
                               cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert f"{result['id']} after epoch" in shown.stdout and "reports/v002.md" in shown.stdout, shown.stdout

        text = subprocess.run([sys.executable, "-m", "tiller", "suggest", "latest", "--runs-dir", str(runs_dir),
                               "--offline"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert text.returncode == 0 and "from offline rules" in text.stdout, text.stderr
        undo = subprocess.run([sys.executable, "-m", "tiller", "revert", run_id, "1", "--runs-dir", str(runs_dir)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert undo.returncode == 1 and "first config" in undo.stderr
    finally:
        stop(proc, config_path)
