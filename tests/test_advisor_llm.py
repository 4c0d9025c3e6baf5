"""The Claude advisor through the real anthropic SDK, against a local fake endpoint."""

from __future__ import annotations

import errno
import json
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from tests.anthropic_fake import (
    FakeAnthropic, Reply, error_body, key_echo, key_leaks, text_message, tool_message, unreachable_url,
)
from tiller.trainer.advisor import AdvisorError, apply_advice, ask
from tiller.trainer.advisor.llm import ClaudeAdvisor
from tiller.trainer.advisor.types import TOOL_NAME
from tiller.trainer.steering.config import TrainConfig
from tiller.trainer.steering.live_config import CONFIG_FILENAME, parse_live_file, render_live_file, write_atomic

KEY = "sk-ant-test-0123456789-secret"
CLASSES = ["cat", "dog", "草鱼"]


@pytest.fixture
def fake(monkeypatch):
    with FakeAnthropic() as server:
        monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        monkeypatch.setenv("TILLER_LLM_MODEL", "claude-test-model")
        yield server


def make_run(store, epochs: int = 4) -> str:
    """A running run with a config, ``epochs`` logged epochs and stored predictions."""
    run = store.start_run(model="mlp", dataset="digits").__enter__()
    config = TrainConfig(num_epochs=20).model_dump()
    write_atomic(run.dir / CONFIG_FILENAME, render_live_file(config))
    run.config_version(config, source="cli", reason="initial config", epoch=1)
    labels = np.array([0] * 10 + [1] * 10 + [2] * 4)
    run.val_samples(labels=labels, sample_ids=[f"digits#{i}" for i in range(24)], class_names=CLASSES,
                    train_counts=[40, 40, 16])
    for epoch in range(1, epochs + 1):
        run.log(epoch, {"train/loss": 1.0 / epoch, "train/accuracy": 0.5 + 0.1 * epoch,
                        "val/loss": 1.1 / epoch, "val/accuracy": 0.45 + 0.1 * epoch, "lr": 0.001})
        probs = np.eye(3)[np.where(labels == 2, 0, labels)] * 0.9 + 0.1 / 3  # class 2 is never found
        run.predictions(epoch, probs)
        run.flush()  # the epoch boundary, as the trainer does
    return run.id


GOOD_INPUT = {
    "analysis": "## Assessment\nClass **草鱼** has recall 0.0; the rest are fine.",
    "suggestions": [
        {"parameter": "use_class_weights", "current_value": False, "suggested_value": True,
         "reason": "草鱼 is never predicted"},
        {"parameter": "learning_rate", "current_value": 0.0001, "suggested_value": 0.0005, "reason": "slow"},
        {"parameter": "model_name", "current_value": "mlp", "suggested_value": "resnet18", "reason": "bigger"},
        {"parameter": "dropout_rate", "current_value": 0.2, "suggested_value": 1.5, "reason": "overfit"},
        {"parameter": "learning_rat", "current_value": 0.001, "suggested_value": 0.01, "reason": "typo"},
        {"parameter": "batch_size", "current_value": 32, "suggested_value": "64", "reason": "string"},
        {"parameter": "autopilot_max_changes", "current_value": 10, "suggested_value": 100, "reason": "more"},
    ],
}


def test_a_good_reply_is_parsed_checked_and_stored(store, fake):
    run_id = make_run(store)
    fake.reply(Reply(body=tool_message(GOOD_INPUT)))

    record = ask(store, run_id, "why is 草鱼 never right?", advisor=ClaudeAdvisor(max_retries=0))

    assert record.advisor == "claude-test-model"
    assert "recall 0.0" in record.analysis
    by_key = {s.parameter: s for s in record.suggestions}
    assert [s.number for s in record.suggestions] == list(range(1, 8))
    assert by_key["use_class_weights"].ok and by_key["learning_rate"].ok
    # The advisor misread the current lr: the real one is kept, with a note.
    assert by_key["learning_rate"].current_value == 0.001 and "0.0001" in by_key["learning_rate"].notes[0]
    assert "fixed for the life of the run" in by_key["model_name"].problem
    assert "dropout_rate" in by_key["dropout_rate"].problem and "less than 1" in by_key["dropout_rate"].problem
    assert "did you mean 'learning_rate'" in by_key["learning_rat"].problem
    assert "valid integer" in by_key["batch_size"].problem
    assert "may not change" in by_key["autopilot_max_changes"].problem
    assert store.advice_item(record.id)["suggestions"][0]["parameter"] == "use_class_weights"


def test_the_request_forces_the_tool_and_carries_what_an_engineer_would_read(store, fake):
    run_id = make_run(store)
    fake.reply(Reply(body=tool_message({"analysis": "fine", "suggestions": []})))
    ask(store, run_id, "why is val loss rising?", advisor=ClaudeAdvisor(max_retries=0))

    (request,) = fake.requests
    assert request["path"] == "/v1/messages"
    headers = request["headers"]  # the SDK sends the key as x-api-key or as a bearer token
    assert KEY in (headers.get("x-api-key"), headers.get("authorization", "").removeprefix("Bearer "))
    body = request["json"]
    assert body["model"] == "claude-test-model"
    assert body["tool_choice"] == {"type": "tool", "name": TOOL_NAME}
    assert [t["name"] for t in body["tools"]] == [TOOL_NAME]
    assert body["tools"][0]["input_schema"]["required"] == ["analysis", "suggestions"]
    context = json.loads(body["messages"][0]["content"])
    assert context["question"] == "why is val loss rising?"
    assert context["config"]["learning_rate"] == 0.001
    assert context["adjustable_keys"]["learning_rate"]["bounds"] == "> 0.0 and <= 10.0"
    assert context["adjustable_keys"]["optimizer"]["choices"] == ["Adam", "AdamW", "SGD"]
    assert "model_name" in context["fixed_keys"] and "model_name" not in context["adjustable_keys"]
    assert not any(k.startswith("autopilot") for k in context["adjustable_keys"])
    assert [row["epoch"] for row in context["history"]] == [1, 2, 3, 4]
    assert context["history"][-1]["val/accuracy"] == pytest.approx(0.85)
    classes = context["classes"]
    assert classes["names"] == CLASSES and classes["train_counts"] == [40, 40, 16]
    assert classes["val_counts"] == [10, 10, 4] and classes["recall"] == [1.0, 1.0, 0.0]
    assert classes["confusion_matrix"]["values"][2] == [4, 0, 0]


def test_earlier_changes_are_sent_with_what_followed(store, fake):
    run_id = make_run(store, epochs=2)
    config = store.current_config(run_id)
    store.add_config_version(run_id, {**config, "learning_rate": 0.01}, source="user", reason="faster", epoch=3)
    store.log_metrics(run_id, 3, {"val/loss": 2.0, "val/accuracy": 0.3})
    fake.reply(Reply(body=tool_message({"analysis": "lr too high", "suggestions": []})))
    ask(store, run_id, advisor=ClaudeAdvisor(max_retries=0))
    (change,) = json.loads(fake.requests[0]["json"]["messages"][0]["content"])["earlier_changes"]
    assert change["changed"] == {"learning_rate": [0.001, 0.01]} and change["reason"] == "faster"
    assert change["val_before"]["epoch"] == 2 and change["val_after"] == {"epoch": 3, "val/loss": 2.0,
                                                                          "val/accuracy": 0.3}


FAILURES = {
    "401": ([Reply(401, error_body("authentication_error", "invalid x-api-key"))], "refused the key (401"),
    "429": ([Reply(429, error_body("rate_limit_error", "slow down"), headers={"retry-after": "0"})] * 3,
            "rate-limiting this key (429, after 3 tries)"),
    "500": ([Reply(500, error_body("api_error", "boom"), headers={"retry-after": "0"})] * 3, "HTTP 500"),
    "529": ([Reply(529, error_body("overloaded_error", "Overloaded"), headers={"retry-after": "0"})] * 3,
            "HTTP 529, after 3 tries): Overloaded"),
    "no tool call": ([Reply(body=text_message("I think you should lower the lr."))], "without the"),
    "other tool": ([Reply(body=tool_message({}, name="something_else"))], "without the"),
    "cut off": ([Reply(body=tool_message({"analysis": "x", "suggestions": []}, stop_reason="max_tokens"))],
                "cut off"),
    "malformed: suggestions not a list": ([Reply(body=tool_message({"analysis": "x", "suggestions": "lower lr"}))],
                                          "'suggestions' is missing or not a list"),
    "malformed: no analysis": ([Reply(body=tool_message({"suggestions": []}))], "'analysis' is missing"),
    "malformed: suggestion without parameter": (
        [Reply(body=tool_message({"analysis": "x", "suggestions": [{"suggested_value": 1}]}))], "suggestion 1 needs"),
    "timeout": ([Reply(body=tool_message({"analysis": "late", "suggestions": []}), delay=3.0)], "did not answer within 1 s"),
}


@pytest.mark.parametrize("kind", list(FAILURES))
def test_each_failure_says_why_and_changes_nothing(store, fake, kind, monkeypatch):
    replies, expected = FAILURES[kind]
    monkeypatch.setenv("TILLER_LLM_TIMEOUT", "1")
    run_id = make_run(store)
    live_path = store.runs_dir / run_id / CONFIG_FILENAME
    before = live_path.read_bytes()
    fake.reply(*replies)
    retries = 2 if len(replies) == 3 else 0
    with pytest.raises(AdvisorError) as caught:
        ask(store, run_id, advisor=ClaudeAdvisor(max_retries=retries))
    message = str(caught.value)
    assert expected in message
    assert KEY not in message
    assert len(fake.requests) == len(replies)
    assert store.advice(run_id).empty
    assert live_path.read_bytes() == before
    assert len(store.config_versions(run_id)) == 1


def test_an_unreachable_endpoint_is_a_clear_error(store, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    run_id = make_run(store)
    with unreachable_url() as url:  # a port this test holds: no other server can answer on it
        monkeypatch.setenv("ANTHROPIC_BASE_URL", url)
        with pytest.raises(AdvisorError, match="could not reach the Anthropic API at 127.0.0.1"):
            ask(store, run_id, advisor=ClaudeAdvisor(max_retries=0))


def test_the_unreachable_url_stays_unreachable_while_other_servers_start():
    """Item 18's root: a "nothing listens" port that another server can take. This one cannot be taken."""
    with unreachable_url() as url:
        port = int(url.rsplit(":", 1)[1])
        with pytest.raises(OSError):  # what FakeAnthropic's server (SO_REUSEADDR) does, on this port
            server = ThreadingHTTPServer(("127.0.0.1", port), BaseHTTPRequestHandler)
            server.server_close()
        with socket.socket() as client:
            assert client.connect_ex(("127.0.0.1", port)) == errno.ECONNREFUSED


# -------------------------------------------- replies that are not the API's (item 14)

NOT_THE_API = {
    "an HTML page": (Reply(body="<html><body>Sign in to the proxy</body></html>", content_type="text/html"),
                     "did not answer like the Anthropic API (got text/html)"),
    "JSON that does not parse": (Reply(body="{not json", content_type="application/json"),
                                 "(got application/json that is not valid JSON)"),
    "JSON that is not a message": (Reply(body={"status": "ok"}), "(got application/json without a message)"),
    "plain text": (Reply(body="OK", content_type="text/plain"), "(got text/plain)"),
}


@pytest.mark.parametrize("kind", list(NOT_THE_API))
def test_a_200_that_is_not_the_api_names_the_endpoint_and_the_variable(store, fake, kind):
    reply, expected = NOT_THE_API[kind]
    run_id = make_run(store)
    fake.reply(reply)
    with pytest.raises(AdvisorError) as caught:
        ask(store, run_id, advisor=ClaudeAdvisor(max_retries=0))
    message = str(caught.value)
    assert f"the endpoint at {fake.url} did not answer like the Anthropic API" in message
    assert expected in message and "check ANTHROPIC_BASE_URL" in message
    assert store.advice(run_id).empty


@pytest.mark.parametrize("raw", ["abc", "0", "-5", "nan", "inf", "-inf", "1e999", "5s"])
def test_a_bad_timeout_says_the_variable_the_value_and_what_is_accepted(store, fake, monkeypatch, raw):
    monkeypatch.setenv("TILLER_LLM_TIMEOUT", raw)
    run_id = make_run(store)
    advisor = ClaudeAdvisor(max_retries=0)  # built without complaint: the environment is read when asking
    with pytest.raises(AdvisorError) as caught:
        ask(store, run_id, advisor=advisor)
    assert str(caught.value).startswith(f"TILLER_LLM_TIMEOUT is {raw!r}: it must be a positive number of seconds")
    assert fake.requests == []  # nothing was asked


def test_a_good_timeout_is_used(store, fake, monkeypatch):
    monkeypatch.setenv("TILLER_LLM_TIMEOUT", " 7.5 ")
    fake.reply(Reply(body=tool_message({"analysis": "fine", "suggestions": []})))
    ask(store, make_run(store), advisor=ClaudeAdvisor(max_retries=0))
    assert fake.requests[0]["headers"]["x-stainless-read-timeout"] == "7.5"


def test_a_404_naming_the_model_is_an_unknown_model(store, fake):
    fake.reply(Reply(404, error_body("not_found_error", "model: claude-test-model")))
    with pytest.raises(AdvisorError) as caught:
        ask(store, make_run(store), advisor=ClaudeAdvisor(max_retries=0))
    message = str(caught.value)
    assert message.startswith("unknown model 'claude-test-model' (404: model: claude-test-model); set TILLER_LLM_MODEL")
    assert "ANTHROPIC_BASE_URL" not in message


def test_a_base_url_with_a_wrong_path_is_not_an_unknown_model(store, fake, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.url + "/v1")  # a common slip: the SDK adds /v1 itself
    with pytest.raises(AdvisorError) as caught:
        ask(store, make_run(store), advisor=ClaudeAdvisor(max_retries=0))
    message = str(caught.value)
    assert f"the endpoint at {fake.url}/v1 has no /v1/v1/messages (HTTP 404: Not Found)" in message
    assert "check ANTHROPIC_BASE_URL" in message and "unknown model" not in message
    assert fake.requests[0]["path"] == "/v1/v1/messages"


def test_a_proxy_404_page_is_a_wrong_url(store, fake):
    fake.reply(Reply(404, "<h1>Not Found</h1>", content_type="text/html"))
    with pytest.raises(AdvisorError) as caught:
        ask(store, make_run(store), advisor=ClaudeAdvisor(max_retries=0))
    message = str(caught.value)
    assert "has no /v1/messages (HTTP 404: a text/html reply, not an API error)" in message
    assert "unknown model" not in message


def test_without_a_key_claude_is_not_called_and_the_rules_answer(store, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    run_id = make_run(store)
    with pytest.raises(AdvisorError, match="no API key"):
        ClaudeAdvisor().advise(None)
    record = ask(store, run_id)  # chooses the offline rules
    assert record.advisor == "offline rules"


def test_applied_advice_reaches_the_live_file_with_source_llm_and_its_id(store, fake):
    run_id = make_run(store)
    fake.reply(Reply(body=tool_message(GOOD_INPUT)))
    record = ask(store, run_id, advisor=ClaudeAdvisor(max_retries=0))
    with pytest.raises(AdvisorError, match="cannot apply refused suggestions: #3"):
        apply_advice(store, record, [1, 3])
    sent = apply_advice(store, record, [1, 2])
    assert sent == {"use_class_weights": True, "learning_rate": 0.0005}
    live = parse_live_file((store.runs_dir / run_id / CONFIG_FILENAME).read_text())
    assert live.values["learning_rate"] == 0.0005 and live.values["use_class_weights"] is True
    assert live.note.source == "llm" and live.note.id == f"{record.id}#1,2"


def test_a_finished_run_cannot_be_changed(store, fake):
    run_id = make_run(store)
    store.update_run(run_id, status="finished")
    fake.reply(Reply(body=tool_message(GOOD_INPUT)))
    record = ask(store, run_id, advisor=ClaudeAdvisor(max_retries=0))  # asking is still allowed
    with pytest.raises(AdvisorError, match="the run is finished"):
        apply_advice(store, record, [1])


def test_a_long_history_is_thinned_to_a_bounded_prompt(store, fake):
    run_id = make_run(store, epochs=1000)
    fake.reply(Reply(body=tool_message({"analysis": "long", "suggestions": []})))
    ask(store, run_id, advisor=ClaudeAdvisor(max_retries=0))
    context = json.loads(fake.requests[0]["json"]["messages"][0]["content"])
    epochs = [row["epoch"] for row in context["history"]]
    assert len(epochs) == 100 and epochs[0] == 1 and epochs[-60:] == list(range(941, 1001))
    assert epochs == sorted(epochs) and "100 of 1000 epochs" in context["history_note"]


# ------------------------------------------------ a gateway that echoes the key (item 5)

ODD_KEY = "sk-ant-api03-Tiller/Echo+Test=0123456789abcdefXYZ"  # "/", "+", "=" change when escaped or encoded


@pytest.mark.parametrize("variable", ["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"])
@pytest.mark.parametrize("status, kind", [(401, "authentication_error"), (403, "permission_error"),
                                          (400, "invalid_request_error"), (500, "api_error")])
def test_an_echoed_credential_is_redacted_from_the_error(store, fake, monkeypatch, variable, status, kind):
    monkeypatch.setenv(variable, ODD_KEY)  # a token beside the API key is not sent, but it is a secret all the same
    fake.reply(Reply(status, error_body(kind, key_echo(ODD_KEY))))
    with pytest.raises(AdvisorError) as caught:
        ask(store, make_run(store), advisor=ClaudeAdvisor(max_retries=0))
    error = caught.value
    shown = "\n".join([str(error), repr(error), *map(repr, error.args)])
    assert key_leaks(shown, ODD_KEY) == []
    assert "[redacted]" in str(error) and str(status) in str(error)
    assert error.__context__ is None and error.__cause__ is None  # no SDK exception (with the key) rides along


def test_a_reply_that_echoes_the_key_is_stored_redacted(store, fake, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", ODD_KEY)
    fake.reply(Reply(body=tool_message({
        "analysis": f"Your key is {ODD_KEY}.",
        "suggestions": [{"parameter": "learning_rate", "current_value": 0.001, "suggested_value": 0.0005,
                         "reason": key_echo(ODD_KEY)},
                        {"parameter": "model_note", "current_value": "", "suggested_value": ODD_KEY,
                         "reason": "note it"}]})))
    record = ask(store, make_run(store), advisor=ClaudeAdvisor(max_retries=0))
    assert key_leaks(json.dumps(record.to_dict()), ODD_KEY) == []
    assert record.analysis == "Your key is [redacted]."
    assert record.suggestions[0].suggested_value == 0.0005
    assert key_leaks(json.dumps(store.advice_item(record.id), default=str), ODD_KEY) == []
