"""Run references and run ids at their edges: an empty reference names no run, and a
model name of any length or alphabet makes a readable, unique, path-safe run id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path

import pytest

from tiller.store import RunNotFound, Store
from tiller.store.paths import RUN_ID_MAX, make_run_id, run_dir_for
from tests.test_live_steering import ROOT
from tiller.trainer.steering.live_config import live_config_path

LONG_MODEL = "m" + "-_" * 98 + "-lp"  # 200 characters that still name the MLP ('-' and '_' are ignored in model names)
ODD_MODELS = [
    LONG_MODEL,
    "a" * 200,
    "模型/../../" + "x" * 190,
    "../..",
    "  my model (v2)!  ",
    "hf-hub:timm/" + "vit_" * 40,
    "ümlaut_Модель_" + "y" * 100,
]


def tiller(runs_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tiller", *args, "--runs-dir", str(runs_dir)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})


# ------------------------------------------------------------ empty references

@pytest.fixture
def one_running_run(tmp_path) -> tuple[Path, str]:
    store = Store(tmp_path)
    run_id = store.create_run(model="mlp", dataset="digits", run_id="mlp_20260101_000001")
    store.add_config_version(run_id, {"model_name": "mlp", "num_epochs": 3}, source="cli", epoch=1)
    store.close()
    return tmp_path, run_id


@pytest.mark.parametrize("ref", ["", " ", "\t\n"])
def test_the_store_refuses_an_empty_run_reference(one_running_run, ref):
    runs_dir, _ = one_running_run
    with pytest.raises(RunNotFound, match="no run given"):
        Store(runs_dir).find_run(ref)


@pytest.mark.parametrize("command", [["show"], ["set", "learning_rate=0.01"], ["pause"], ["stop"], ["resume"],
                                     ["suggest", "--offline"], ["revert", "1"]], ids=lambda command: command[0])
def test_every_command_that_takes_a_run_refuses_an_empty_reference(one_running_run, command):
    runs_dir, run_id = one_running_run
    for ref in ("", "  "):
        verb, *rest = command
        done = tiller(runs_dir, verb, ref, *rest)
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stderr.startswith("tiller: no run given") and "'latest'" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    assert not live_config_path(runs_dir, run_id).exists()  # nothing was sent to the only run


# ---------------------------------------------------------------- long names

@pytest.mark.parametrize("model", ODD_MODELS)
def test_any_model_name_makes_a_valid_readable_run_id(tmp_path, model):
    when = datetime(2025, 9, 13, 10, 48, 48)
    run_id = make_run_id(model, when)
    assert run_id.endswith("_20250913_104848") and len(run_id) <= RUN_ID_MAX
    assert run_id[0].isalnum() and "--" not in run_id[-20:]  # readable: no leading dot, no dangling separators
    run_dir_for(tmp_path, run_id)  # a valid id: raises otherwise
    store = Store(tmp_path)
    ids = [store.create_run(model=model, dataset="d", run_id=run_id) for _ in range(12)]  # same second, same model
    assert len(set(ids)) == 12 and all(len(i) <= RUN_ID_MAX for i in ids)
    for i in ids:
        run_dir_for(tmp_path, i)


def test_tiller_train_with_a_200_character_model_name(tmp_path):
    done = tiller(tmp_path, "train", "--set", f"model_name={json.dumps(LONG_MODEL)}", "--set", "num_epochs=1")
    assert done.returncode == 0, done.stdout + done.stderr
    runs = Store(tmp_path).runs()
    run_id = runs["id"].iloc[0]
    assert runs["model"].iloc[0] == LONG_MODEL and runs["status"].iloc[0] == "finished"
    assert run_id.startswith("m_20") and len(run_id) <= RUN_ID_MAX  # cut at 60 characters, then the dashes and (tmp_path / run_id / "config.json").is_file()


def test_tiller_run_with_long_odd_model_names_twice_in_the_same_second(tmp_path):
    script = textwrap.dedent(f"""
        import tiller
        for model in {ODD_MODELS[2:4] + ODD_MODELS[2:4]!r}:
            with tiller.run({{"model_name": model, "num_epochs": 1}}, runs_dir={str(tmp_path)!r}, say=print) as run:
                for epoch in run.epochs():
                    run.log(train_loss=1.0)
            print("id", run.id)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    ids = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("id ")]
    assert len(set(ids)) == 4 and all(len(i) <= RUN_ID_MAX for i in ids), ids
    assert set(Store(tmp_path).runs()["status"]) == {"finished"}
