"""Issue 9: `tiller demo` used from a real browser, the way a user would, with screenshots.

A headless Chromium (1280 x 800) drives the dashboard of `tiller demo --no-browser` while the
demo trains: the Runs page lists the runs and their epochs grow; on the Run page of the
ResNet ("steer me") a too-high learning rate is sent from the Steer form, reads as pending,
then as applied, and shows in the config history and on the lr curve; Pause and Resume
change the run's status; the offline advisor
spots the divergence and one of its suggestions is applied (a config version with source
llm); the Evaluation and Compare pages render. No page may show a Streamlit exception.

Every page visited is saved as a full-page PNG in ``$TILLER_SCREENSHOTS`` (default: the
test's tmp dir); ``docs/screenshots/`` holds a selection of them.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tiller.store import Store

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1280, "height": 800}
START_TIMEOUT_S = 90  # the demo's first run, Streamlit and Chromium start slowly on a loaded 2-core machine
EPOCH_TIMEOUT_S = 60  # one ResNet epoch takes ~10 s on 2 cores; the browser slows it down
UI_TIMEOUT_MS = 20_000  # the live parts of a page redraw every 2 s
STILL_TIMEOUT_MS = 5_000  # waiting for a moment with no redraw under way, before a screenshot
HIGH_LR = 0.05  # 50x the demo's 0.001: the ResNet's loss jumps, which the offline advisor calls divergence
ADVICE_ROW_PX = 78  # dashboard.advisor_panel.ROW_HEIGHT
GRID_HEADER_PX = 36  # Streamlit's data grid header row, border included
# While a page reruns, Streamlit keeps the elements drawn before, marked stale, until it has
# drawn their successors: for a moment an element can be there twice.
FRESH = '[data-testid="stElementContainer"]:not([data-stale="true"])'


def browser_or_skip() -> None:
    """Skip without a browser, but never in CI: there a missing browser is a broken setup."""
    reason = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reason = "playwright is not installed (pip install -e '.[dev]')"
    if reason is None and not os.access(CHROMIUM, os.X_OK):
        reason = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser tests, but {reason}")
        pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def group_members(pgid: int) -> list[str]:
    """The live (not zombie) processes of process group ``pgid``, as 'pid command' lines."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # ended meanwhile
        fields = text.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        if int(fields[2]) == pgid and fields[0] != "Z":
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            members.append(f"{stat.parent.name} {command.strip()}")
    return members


class Demo:
    """`tiller demo --no-browser` in its own process group (its trainer and Streamlit join it)."""

    def __init__(self, tmp_path: Path):
        self.runs_dir, self.port, self.log = tmp_path / "runs", free_port(), tmp_path / "demo.log"
        # The offline advisor answers only when no key is set: the test must not reach Claude.
        env = {key: value for key, value in os.environ.items() if key != "ANTHROPIC_API_KEY"}
        env["OMP_NUM_THREADS"] = "1"
        with open(self.log, "w", encoding="utf-8") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tiller", "demo", "--no-browser", "--port", str(self.port),
                 "--runs-dir", str(self.runs_dir)],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"
        self.store: Store | None = None

    def output(self) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""
        trainer_log = self.runs_dir / "demo-trainer.log"
        if trainer_log.exists():
            text += "\n--- demo-trainer.log\n" + trainer_log.read_text(encoding="utf-8", errors="replace")[-4000:]
        return text[-8000:]

    def wait(self, condition, what: str, timeout: float = EPOCH_TIMEOUT_S, seen=None):
        """Poll ``condition`` until it returns something truthy; fail if the demo dies or time runs out
        (saying what ``seen()`` returns then, if given)."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if self.proc.poll() is not None:
                pytest.fail(f"the demo exited ({self.proc.returncode}) while waiting for {what}:\n{self.output()}")
            if time.monotonic() > deadline:
                shown = f"; the page shows {seen()}" if seen is not None else ""
                pytest.fail(f"timed out after {timeout:g} s waiting for {what}{shown}:\n{self.output()}")
            time.sleep(0.25)

    def db(self) -> Store:
        if self.store is None:
            self.wait(lambda: (self.runs_dir / "tiller.db").exists(), "the runs database", START_TIMEOUT_S)
            self.store = Store(self.runs_dir)
        return self.store

    def run_of(self, model: str) -> dict | None:
        runs = self.db().runs()
        rows = runs[runs["model"] == model].to_dict("records") if not runs.empty else []
        return rows[0] if rows else None

    def stop(self) -> None:
        """SIGTERM, as Ctrl-C or a service manager would; then nothing of the demo may be left running."""
        if self.store is not None:
            self.store.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + 30
        while (left := group_members(self.proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.2)
        if left or self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=30)
            pytest.fail(f"processes outlived the demo's SIGTERM (killed now): {left}")


@pytest.fixture
def demo(tmp_path):
    browser_or_skip()
    started = Demo(tmp_path)
    yield started
    started.stop()


# ------------------------------------------------------------------ page helpers


def no_exception(page) -> None:
    from playwright.sync_api import expect

    expect(page.locator('[data-testid="stException"]')).to_have_count(0)


def screenshot(page, folder: Path, name: str, clip_to=None) -> Path:
    """The whole page as a PNG. Streamlit scrolls inside its main block, not the document, so
    the viewport is made as tall as that block for the shot, then set back. ``clip_to``: a
    function of the tall page giving the (top, bottom) page coordinates to keep."""
    height = page.evaluate(
        "() => Math.max(...Array.from(document.querySelectorAll('[data-testid=stMain], "
        "[data-testid=stAppViewContainer]'), e => e.scrollHeight), window.innerHeight)")
    page.set_viewport_size({"width": VIEWPORT["width"], "height": min(int(height), 8000)})
    # Two animation frames: the grids and charts have laid themselves out at the new size.
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    wait_until_still(page)
    path = folder / f"{name}.png"
    clip = None
    if clip_to is not None:
        top, bottom = clip_to(page)
        clip = {"x": 0, "y": max(0, top), "width": VIEWPORT["width"], "height": bottom - max(0, top)}
    page.screenshot(path=path, full_page=clip is None, clip=clip, animations="disabled")
    page.set_viewport_size(VIEWPORT)
    return path


def wait_until_still(page) -> None:
    """For a few seconds at most, wait for a moment when no live part of the page is redrawing:
    Streamlit fades the elements a rerun has not redrawn yet, and a shot would show them faded."""
    from playwright.sync_api import expect

    try:
        expect(page.locator('[data-stale="true"]')).to_have_count(0, timeout=STILL_TIMEOUT_MS)
    except AssertionError:
        pass  # the live parts kept redrawing: a faded part in the shot is all it costs


def grid_rows(grid) -> list[list[str]]:
    """The rows of a Streamlit data grid (a canvas), from the accessible table it mirrors its
    cells in; the first grid when a rerun shows a stale copy of it too."""
    grid = grid.first
    grid.scroll_into_view_if_needed()
    rows = []
    for row in grid.locator('[role="row"]').all():
        cells = [text.strip() for text in row.locator('[role="gridcell"]').all_text_contents()]
        if cells:
            rows.append(cells)
    return rows


def lr_chart_of(page):
    """The Run page's lr chart (the first, should a rerun show it twice for a moment)."""
    return page.locator(FRESH + ' [data-testid="stPlotlyChart"]').filter(
        has_text="Learning rate and config changes").first


def settled(page, charts: int) -> None:
    """Wait until the page shows ``charts`` charts, no stale copies (before a screenshot)."""
    from playwright.sync_api import expect

    expect(page.locator('[data-testid="stPlotlyChart"]')).to_have_count(charts)


def epoch_shown(page) -> int:
    """The epoch in the Run page's progress bar ("Epoch 3/40 · 9.8 s per epoch · …"), 0 before it shows."""
    texts = page.get_by_text(re.compile(r"^Epoch \d+/\d+( · |$)")).all_text_contents()
    return int(re.match(r"Epoch (\d+)", texts[0]).group(1)) if texts else 0


# ------------------------------------------------------------------------ test


def test_a_user_watches_steers_pauses_and_asks_the_advisor_in_a_real_browser(demo, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    shots = Path(os.environ.get("TILLER_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    expect.set_options(timeout=UI_TIMEOUT_MS)

    # The ResNet is the run to steer: the MLP baseline is over in seconds, the ResNet trains for minutes.
    resnet = demo.wait(lambda: (r := demo.run_of("resnet18")) and r["status"] == "running" and r,
                       "the ResNet run to start", START_TIMEOUT_S)
    run_id, mlp_id = resnet["id"], demo.run_of("mlp")["id"]
    assert demo.run_of("mlp")["status"] == "finished"

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport=VIEWPORT)

        # --- Runs page: both runs listed, and the ResNet's epoch count grows between two looks.
        page.goto(demo.url + "/", timeout=START_TIMEOUT_S * 1000)
        expect(page.get_by_role("heading", name="Runs")).to_be_visible(timeout=START_TIMEOUT_S * 1000)
        runs_grid = page.locator('[data-testid="stDataFrame"]').first
        expect(runs_grid).to_be_visible()

        def resnet_epoch() -> int | None:
            for cells in grid_rows(runs_grid):
                if f"run?run={run_id}" in cells and "digits ResNet-18 (steer me)" in cells:
                    epochs = [int(m.group(1)) for m in map(re.compile(r"^(\d+)/40$").match, cells) if m]
                    return epochs[0] if epochs else None
            return None

        first_look = demo.wait(lambda: (e := resnet_epoch()) is not None and e >= 1 and e, "the Runs page to "
                               "list the ResNet with an epoch done")
        assert any(f"run?run={mlp_id}" in cells and "30/30" in cells for cells in grid_rows(runs_grid))
        screenshot(page, shots, "runs")
        second_look = demo.wait(lambda: (e := resnet_epoch()) and e > first_look and e,
                                f"the Runs page to show an epoch after {first_look}")
        assert second_look > first_look
        no_exception(page)

        # --- Run page: the Steer form sends a learning rate.
        page.goto(f"{demo.url}/run?run={run_id}")
        expect(page.get_by_role("heading", name="digits ResNet-18 (steer me)")).to_be_visible()
        badge = page.locator(".stMarkdownBadge").first
        expect(badge).to_contain_text("running")
        lr_input = page.get_by_role("spinbutton", name="learning_rate")
        expect(lr_input).to_have_value("0.001")
        lr_chart = lr_chart_of(page)
        expect(lr_chart).to_be_visible()
        settled(page, 3)
        screenshot(page, shots, "run-steer")
        lr_input.fill(str(HIGH_LR))
        page.get_by_placeholder("why: recorded with the change").fill("e2e test: a learning rate far too high")
        page.get_by_role("button", name="Send changes").click()
        sent = page.get_by_text(re.compile(r"^Sent learning_rate 0\.001 → 0\.05 at [\d:]+: pending\."))
        expect(sent).to_be_visible()
        no_exception(page)

        # --- Pause, then Resume: the badge follows, and so does the run itself; each says so in a toast.
        page.get_by_role("button", name=re.compile("Pause$")).click()
        expect(page.get_by_text(re.compile(r"^Pause requested: "))).to_be_visible()  # the toast
        expect(badge).to_contain_text("paused", timeout=EPOCH_TIMEOUT_S * 1000)
        assert demo.db().run(run_id)["status"] == "paused"
        resume = page.get_by_role("button", name=re.compile("Resume$"))
        expect(resume).to_be_enabled()
        resume.click()
        expect(page.get_by_text(re.compile(r"^Resume requested: "))).to_be_visible()
        expect(badge).to_contain_text("running", timeout=EPOCH_TIMEOUT_S * 1000)
        demo.wait(lambda: demo.db().run(run_id)["status"] == "running", "the store to say running again")
        no_exception(page)

        # --- The change applies at the next epoch boundary: a new config version from the
        # dashboard (source user) in the history, a marker on the lr curve, then a logged lr.
        version = demo.wait(lambda: (v := demo.db().config_versions(run_id)).shape[0] >= 2 and v.iloc[-1].to_dict(),
                            "the learning rate change to apply")
        assert (version["source"], version["config"]["learning_rate"]) == ("user", HIGH_LR)
        assert version["reason"] == "e2e test: a learning rate far too high"
        history = page.locator('[data-testid="stDataFrame"]').filter(
            has=page.locator('[role="columnheader"]', has_text="from epoch"))
        history.scroll_into_view_if_needed()
        demo.wait(lambda: any(cells[:1] == ["2"] and "user" in cells and "learning_rate 0.001 → 0.05" in cells
                              for cells in grid_rows(history)),
                  "the config history to show v2 from user", UI_TIMEOUT_MS / 1000, seen=lambda: grid_rows(history))
        expect(lr_chart).to_contain_text("v2 user")
        # Under the form, the pending change now reads as applied.
        applied_note = re.compile(rf"^Applied as v2 from epoch {version['epoch']}: learning_rate 0\.001 → 0\.05")
        expect(page.get_by_text(applied_note)).to_be_visible()
        expect(sent).to_have_count(0)
        changed_from = int(version["epoch"])
        demo.wait(lambda: epoch_shown(page) >= changed_from, f"epoch {changed_from} (the first at lr {HIGH_LR})")
        lrs = demo.db().metrics([run_id], names=["lr"]).set_index("epoch")["value"]
        assert lrs[changed_from] == pytest.approx(HIGH_LR) and lrs[changed_from - 1] == pytest.approx(0.001)
        expect(lr_chart.locator(".ytick")).to_contain_text(["0.001", "0.05"])
        no_exception(page)
        settled(page, 3)
        screenshot(page, shots, "run-after-change")

        # --- The offline advisor sees the loss jump and suggests a lower lr; apply it.
        page.get_by_role("button", name="Ask for suggestions").click()
        # The advice's bordered box: the innermost block holding its heading (the last in document order).
        advice = page.locator('[data-testid="stVerticalBlock"]').filter(
            has_text="offline rules answered after epoch").last
        expect(advice).to_contain_text("Divergence", timeout=EPOCH_TIMEOUT_S * 1000)
        editor = advice.locator(FRESH + ' [data-testid="stDataFrame"]')
        rows = demo.wait(lambda: grid_rows(editor), "the suggestions table", UI_TIMEOUT_MS / 1000)
        wanted = next(i for i, cells in enumerate(rows) if "learning_rate" in cells)
        assert rows[wanted][-1] == "valid", rows
        suggested = float(rows[wanted][4])
        box = editor.first.bounding_box()
        # The row's "apply" checkbox sits in the middle of the first column.
        page.mouse.click(box["x"] + 43, box["y"] + GRID_HEADER_PX + ADVICE_ROW_PX * (wanted + 0.5))
        apply = page.get_by_role("button", name="Apply selected at next epoch")
        expect(apply).to_be_enabled()
        apply.click()
        expect(advice).to_contain_text(re.compile(r"Sent learning_rate 0\.05 → [\d.]+ as change adv_\S+ \(source llm\)"))
        demo.wait(lambda: any("learning_rate" in cells and cells[-1].startswith("⏳ sent") for cells in grid_rows(editor)),
                  "the suggestion to read as sent", UI_TIMEOUT_MS / 1000, seen=lambda: grid_rows(editor))
        no_exception(page)
        screenshot(page, shots, "advisor", clip_to=lambda p: (
            p.get_by_role("heading", name="Advisor").bounding_box()["y"] - 16,
            p.get_by_role("heading", name="Adjustment reports").bounding_box()["y"] - 4))

        # --- Evaluation (the finished baseline) and Compare (both runs) render their main content.
        page.goto(f"{demo.url}/evaluation?run={mlp_id}")
        expect(page.get_by_role("heading", name="Evaluation")).to_be_visible()
        expect(page.get_by_role("heading", name="Classification report")).to_be_visible()
        expect(page.locator('[data-testid="stMetric"]').first).to_be_visible()
        page.get_by_role("tab", name="Confusion matrices").click()
        expect(page.locator('[data-testid="stPlotlyChart"]:visible')).to_have_count(2)
        no_exception(page)
        screenshot(page, shots, "evaluation")

        page.goto(f"{demo.url}/compare")
        expect(page.get_by_role("heading", name="Compare runs")).to_be_visible()
        for heading in ("Hyperparameters", "Config differences", "Final metrics"):
            expect(page.get_by_role("heading", name=heading)).to_be_visible()
        compare_chart = page.locator('[data-testid="stPlotlyChart"]').first
        expect(compare_chart).to_be_visible()
        expect(compare_chart.locator(".legendtext")).to_have_count(2)
        no_exception(page)
        screenshot(page, shots, "compare")

        # --- Back on the Run page: the applied suggestion is v3, from llm, on the curve too.
        page.goto(f"{demo.url}/run?run={run_id}")
        applied = demo.wait(lambda: (v := demo.db().config_versions(run_id)).shape[0] >= 3 and v.iloc[-1].to_dict(),
                            "the advisor's suggestion to apply")
        assert applied["source"] == "llm" and applied["config"]["learning_rate"] == pytest.approx(suggested)
        assert str(applied["change_id"]).startswith("adv_")
        expect(lr_chart_of(page)).to_contain_text("v3 llm")
        history = page.locator('[data-testid="stDataFrame"]').filter(
            has=page.locator('[role="columnheader"]', has_text="from epoch"))
        demo.wait(lambda: any(cells[:1] == ["3"] and "llm" in cells for cells in grid_rows(history)),
                  "the config history to show v3 from llm", UI_TIMEOUT_MS / 1000, seen=lambda: grid_rows(history))
        no_exception(page)
        settled(page, 3)
        screenshot(page, shots, "run-after-advice")
        browser.close()
