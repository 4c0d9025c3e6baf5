"""How long the Evaluation page takes to render for a finished run of 10,000 validation samples.

    /work/venv/bin/python benchmarks/eval_page.py [--samples 10000] [--classes 10] [--epochs 3]

Seeds a temporary runs folder with synthetic predictions, then renders the page
headless with AppTest: the first render (empty caches: every number and figure is
computed), a rerun of the same session and a new session (both from the caches),
and the first render of another epoch. The goal (issue 4): under 2 s after the first load.
Heavy imports happen before the clock starts, so the first number is the page's
own work, not Python loading plotly.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import plotly.graph_objects  # noqa: F401  (imported before timing on purpose)
import sklearn.metrics  # noqa: F401
from streamlit.testing.v1 import AppTest

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
from store import Store  # noqa: E402

PAGE = REPO_ROOT / "dashboard" / "app_pages" / "evaluation.py"
RUN_ID = "bench_eval"
TIMEOUT_S = 120


def synthetic_probs(labels: np.ndarray, classes: int, skill: float, rng: np.random.Generator) -> np.ndarray:
    """Softmax of noise plus ``skill`` on the true class: accuracy grows with skill, as over epochs."""
    logits = rng.normal(size=(len(labels), classes))
    logits[np.arange(len(labels)), labels] += skill
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def seed_run(store: Store, samples: int, classes: int, epochs: int) -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, classes, samples)
    store.create_run(model="mlp", dataset="synthetic", name="evaluation benchmark", run_id=RUN_ID)
    store.record_val_samples(RUN_ID, labels=labels, sample_ids=[f"synthetic#{i}" for i in range(samples)],
                             class_names=[f"class {c}" for c in range(classes)],
                             train_counts=[5 * samples // classes] * classes)
    for epoch in range(1, epochs + 1):
        probs = synthetic_probs(labels, classes, skill=1.0 + epoch, rng=rng)
        store.record_predictions(RUN_ID, epoch, probs)
        store.log_metrics(RUN_ID, epoch, {"val/accuracy": float(np.mean(probs.argmax(axis=1) == labels))})
    store.update_run(RUN_ID, status="finished")


def timed(label: str, render) -> AppTest:
    start = time.perf_counter()
    at = render()
    seconds = time.perf_counter() - start
    if at.exception:
        raise SystemExit(f"{label}: the page raised {at.exception[0].message}")
    print(f"{label:<48} {seconds:6.2f} s")
    return at


def new_session() -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=TIMEOUT_S)
    at.query_params["run"] = RUN_ID
    return at.run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        os.environ["TILLER_RUNS_DIR"] = folder
        seed_run(Store(folder), args.samples, args.classes, args.epochs)
        print(f"{args.samples:,} validation samples x {args.classes} classes, {args.epochs} epochs")
        at = timed("first render (cold caches, best epoch)", new_session)
        timed("rerun, same session", at.run)
        timed("new session", new_session)
        other = next(e for e in range(1, args.epochs + 1) if e != at.selectbox(key=f"eval_epoch_{RUN_ID}").value)
        timed(f"switch to epoch {other} (cold for that epoch)",
              lambda: at.selectbox(key=f"eval_epoch_{RUN_ID}").set_value(other).run())
        timed("change the thresholds", lambda: at.text_input(key=f"eval_thresholds_{RUN_ID}").input("0.5, 0.9").run())


if __name__ == "__main__":
    main()
