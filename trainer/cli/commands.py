"""The ``tiller`` command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Sequence

from tiller.store import LIVE_STATUSES, RunNotFound, Store, StoreWriteError, corruption_in, resolve_runs_dir
from tiller.store.paths import DB_FILENAME, RUNS_DIR_ENV
from tiller.store.store import OWN_LOOP
from tiller.trainer.steering.config import ConfigError, describe_keys, validate_config
from tiller.trainer.steering.safe_text import terminal_text
from tiller.trainer.steering.live_config import (
    LiveFile,
    SetAside,
    live_config_path,
    parse_live_file,
    request_change,
    request_control,
)
from tiller.trainer.steering.review import review_edit
from tiller.trainer.cli import views as report

DEMO_RUNS = (
    # A quick baseline first, so the compare page has two runs to put side by side.
    ("digits MLP baseline (seed 001)", {"model_name": "mlp", "num_epochs": 30}),
    # Then a real CNN that trains for several minutes on 2 CPU cores: time to steer it.
    ("digits ResNet-18 (steer me)", {"model_name": "resnet18", "img_size": 32, "num_epochs": 40,
                                     "batch_size": 32, "learning_rate": 1e-3, "dropout_rate": 0.2}),
)


# --------------------------------------------------------------------- helpers

def parse_assignment(text: str) -> tuple[str, Any]:
    """``key=value`` with the value read as JSON when it parses (``0.01``, ``true``), else a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        return key.strip(), json.loads(raw)
    except json.JSONDecodeError:
        return key.strip(), raw


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def load_config_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"cannot read {path}: {exc.strerror}"]) from None
    return parse_live_file(text).values


def open_store(args) -> Store:
    try:
        return Store(args.runs_dir)
    except StoreWriteError as exc:  # a read-only runs folder, a full disk: say so, no traceback
        fail(str(exc), code=1)


def check_database(args) -> None:
    """Open the runs folder's database, if it has one, and close it: the dashboard and the demo
    serve a folder without reading it first, so a broken tiller.db is said here, before they start."""
    if (resolve_runs_dir(args.runs_dir) / DB_FILENAME).is_file():
        open_store(args).close()


def stop_on_sigterm() -> None:
    """Treat SIGTERM like Ctrl-C: a run ends as ``stopped`` and child processes are ended too."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def fail(message: str, code: int = 2) -> None:
    # Messages quote what users and files hold (names, keys, values): printed inert.
    print(f"tiller: {terminal_text(message)}", file=sys.stderr)
    raise SystemExit(code)


# -------------------------------------------------------------------- commands

def cmd_train(args) -> None:
    from tiller.trainer.engine.loop import train  # torch loads only for the commands that train

    try:
        values = load_config_file(args.config) if args.config else {}
        values.update(dict(args.set or []))
        config = validate_config(values)
    except ConfigError as exc:
        where = f" in {args.config}" if args.config else ""
        fail(f"config error{where}:\n  - " + "\n  - ".join(exc.problems))
    if args.nproc > 1:
        sys.exit(launch_job(args))
    from tiller.trainer.engine import progress
    from tiller.trainer.engine.distributed import World

    with training_errors_reported():
        world = World.from_env()  # a process of a torchrun job, or a run of its own
        try:
            # Closed before training_errors_reported speaks, so its message lands below the display.
            with progress.for_stdout() if world.is_main else progress.silent() as reporter:
                train(config, open_store(args) if world.is_main else None, name=args.name, source="cli",
                      reason=f"started from {args.config}" if args.config else "started from the command line",
                      progress=reporter, world=world)
        finally:
            world.close()


def launch_job(args) -> int:
    """``tiller train --nproc N``: the same command, as N processes of one torchrun job on this machine."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.nproc}",
               "-m", "tiller", "train", "--runs-dir", str(resolve_runs_dir(args.runs_dir))]
    if args.config:
        command += ["--config", str(args.config)]
    for key, value in args.set or []:
        command += ["--set", f"{key}={json.dumps(value)}"]
    if args.name:
        command += ["--name", args.name]
    print(f"starting {args.nproc} training processes with torchrun", flush=True)
    stop_on_sigterm()
    job = subprocess.Popen(command, preexec_fn=end_with_parent if sys.platform == "linux" else None)
    try:
        return job.wait()
    except KeyboardInterrupt:
        end_child(job)
        return 130


def cmd_resume(args) -> None:
    """Un-pause a live run; continue a crashed, failed or stopped one from its last checkpoint."""
    store = open_store(args)
    run_id = resolve_run(store, args.run)
    record = store.run(run_id)
    if record["status"] in LIVE_STATUSES:
        path = live_config_path(store.runs_dir, run_id)
        send_request(path, lambda: request_control(path, "run", fallback=store.current_config(run_id)))
        if record["status"] == "running":  # nothing to un-pause, unless a pause is on its way: cleared too
            print(f"run {run_id} is already running (pid {record['pid']} on {record['host']}); "
                  "resume sent in case a pause was on its way")
        else:
            print(f"resume sent to {run_id} (takes effect at the next training step)")
        return
    from tiller.trainer.engine import progress
    from tiller.trainer.engine.resume import CannotResume, resume

    with training_errors_reported():
        try:
            with progress.for_stdout() as reporter:
                resume(store, run_id, progress=reporter)
        except CannotResume as exc:
            fail(f"cannot resume: {exc}")


@contextlib.contextmanager
def training_errors_reported():
    """What stops a training command, said in a line or two instead of a traceback."""
    from tiller.trainer.engine.distributed import PeerLost, end_job_on_sigterm, launched_by_torchrun
    from tiller.trainer.engine.job_steering import RanksDisagree
    from tiller.trainer.engine.loop import TrainingHalted
    from tiller.trainer.engine.nonfinite import NonfiniteLoss
    from tiller.trainer.engine.state import SetupError

    # torchrun sends SIGTERM to the rest of a job when one process fails: that is a
    # failure of the run, not a stop request.
    end_job_on_sigterm() if launched_by_torchrun() else stop_on_sigterm()
    try:
        yield
    except KeyboardInterrupt:
        fail("interrupted; the run is recorded as stopped", code=130)
    except SetupError as exc:
        fail(f"cannot start the run: {exc}")
    except (TrainingHalted, NonfiniteLoss, PeerLost, RanksDisagree) as exc:
        fail(str(exc), code=1)
    except StoreWriteError as exc:  # before any epoch: the run could not even be recorded
        fail(str(exc), code=1)


def cmd_dashboard(args) -> None:
    sock = listen_for_dashboard(args)
    sys.exit(run_dashboard(args.runs_dir, sock, host=args.host, origins=args.origin,
                           open_browser=not args.no_browser))


def listen_for_dashboard(args):
    """The dashboard's socket, bound before anything else starts: a busy port fails the command at
    once (the demo trains nothing), with a free port to try instead."""
    from tiller.dashboard.serve import CannotListen, PortInUse, listen

    try:
        return listen(args.host, args.port)
    except PortInUse as exc:
        hint = (f"tiller {args.command} --port {exc.free_port}" if exc.free_port
                else f"tiller {args.command} --port PORT")
        fail(f"port {exc.port} is already in use (another Tiller dashboard or demo?); "
             f"stop that one, or choose another port: {hint}", code=1)
    except CannotListen as exc:
        fail(f"{exc}; check --host and --port", code=1)


def run_dashboard(runs_dir: str | None, sock, *, host: str, origins: list[str], open_browser: bool) -> int:
    """Serve the dashboard on ``sock`` (from :func:`listen_for_dashboard`) in a child process until
    Ctrl-C or SIGTERM; print the URL, and open it, once the server answers."""
    from tiller.dashboard import serve

    env = {**os.environ, RUNS_DIR_ENV: str(resolve_runs_dir(runs_dir))}
    url, health_url = serve.url_for(host, sock.getsockname()[1]), serve.health_url(sock)
    stop_on_sigterm()  # `kill PID` ends the server too, instead of leaving it serving the port
    # The child's stdout goes to stderr: stdout holds Tiller's own lines only.
    server = subprocess.Popen(serve.server_command(sock, host, origins), env=env, pass_fds=[sock.fileno()],
                              stdin=subprocess.DEVNULL, stdout=sys.stderr,
                              preexec_fn=end_with_parent if sys.platform == "linux" else None)
    sock.close()  # the server holds it now; the port is free again when the server ends
    try:
        if serve.wait_until_serving(health_url, lambda: server.poll() is not None):
            print(f"Tiller dashboard: {url}", flush=True)
            if open_browser:
                serve.open_in_browser(url)
        code = server.wait()
    except KeyboardInterrupt:
        end_child(server)
        return 0
    if code in (0, -signal.SIGTERM, -signal.SIGINT):  # stopped, not failed
        return 0
    print(f"tiller: the dashboard server ended with status {code}; see the messages above", file=sys.stderr)
    return 1


def end_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the parent dies, even by SIGKILL (Linux)."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def end_child(child: subprocess.Popen, grace_s: float = 30) -> None:
    """SIGTERM, so it ends cleanly (a trainer records its run as stopped); SIGKILL if it will not."""
    if child.poll() is not None:
        return
    child.terminate()
    try:
        child.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def cmd_demo(args) -> None:
    sock = listen_for_dashboard(args)  # first: a busy port ends the demo before it trains
    runs_dir = resolve_runs_dir(args.runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    log_path = runs_dir / "demo-trainer.log"
    print(f"Tiller demo: training on scikit-learn's digits in the background (log: {log_path}).", flush=True)
    stop_on_sigterm()
    trainer = DemoTrainer(runs_dir, log_path)
    trainer.start()
    try:
        code = run_dashboard(str(runs_dir), sock, host=args.host, origins=args.origin,
                             open_browser=not args.no_browser)
    finally:
        trainer.stop()
    if code:
        sys.exit(code)


class DemoTrainer(threading.Thread):
    """Runs the demo's training commands one after the other, in child processes."""

    def __init__(self, runs_dir: Path, log_path: Path):
        super().__init__(name="demo-trainer", daemon=True)
        self.runs_dir, self.log_path = runs_dir, log_path
        self.child: subprocess.Popen | None = None
        self.stopping = threading.Event()

    def run(self) -> None:
        with open(self.log_path, "a", encoding="utf-8") as log:
            for name, overrides in DEMO_RUNS:
                if self.stopping.is_set():
                    return
                command = [sys.executable, "-m", "tiller", "train", "--runs-dir", str(self.runs_dir), "--name", name]
                for key, value in overrides.items():
                    command += ["--set", f"{key}={json.dumps(value)}"]
                self.child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
                self.child.wait()

    def stop(self) -> None:
        """Ending the demo stops the training too (the run is recorded as stopped)."""
        self.stopping.set()
        if self.child is not None:
            # SIGTERM, not SIGINT: a child started in the background may ignore SIGINT.
            end_child(self.child)


def cmd_runs(args) -> None:
    runs = open_store(args).runs()
    if args.json:
        print(report.json_text(report.runs_records(runs)))
    else:
        report.print_runs(runs)


def cmd_show(args) -> None:
    store = open_store(args)
    run_id = resolve_run(store, args.run)
    details = report.run_details(store, run_id, live_config_path(store.runs_dir, run_id))
    if args.json:
        print(report.json_text(details))
    else:
        print(report.run_text(details))


def cmd_set(args) -> None:
    store = open_store(args)
    run_id = resolve_run(store, args.run)
    updates = dict(args.assignments)
    current = store.current_config(run_id)
    run = store.run(run_id)
    problems = edit_problems(current, updates, run)
    if problems:
        fail("not sent: " + problems[0] if len(problems) == 1 else "not sent:\n  - " + "\n  - ".join(problems))
    status = run["status"]
    if status == "finished":
        fail(f"not sent: run {run_id} finished, so nothing will read it; start a new run instead")
    if status not in LIVE_STATUSES and run.get("trainer") == OWN_LOOP:
        fail(f"not sent: run {run_id} ran in a training loop of your own and is {status}; tiller resume cannot "
             "continue it, so nothing will read the change: run your script again with the new value")
    path = live_config_path(store.runs_dir, run_id)
    send_request(path, lambda: request_change(path, updates, source="cli", reason=args.reason, fallback=current))
    when = ("at the next epoch boundary" if status in LIVE_STATUSES
            else f"when the run goes on: tiller resume {run_id}")
    print(f"sent to {run_id}: " + ", ".join(f"{k}={v!r}" for k, v in updates.items()) + f" (applies {when})")


def edit_problems(current: dict[str, Any], updates: dict[str, Any], run: dict[str, Any]) -> list[str]:
    """Why the run would refuse ``updates`` at its next epoch boundary: the trainer's own review,
    with the hot keys the run's loop reads, so nothing is sent that the run would only reject."""
    epochs_done = 0 if run["epoch"] is None or run["epoch"] != run["epoch"] else int(run["epoch"])  # NaN: none yet
    try:
        review_edit(LiveFile(values=updates), validate_config(current), epochs_done, hot_keys=run["hot_keys"])
    except ConfigError as exc:
        return exc.problems
    return []


def cmd_control(args) -> None:
    store = open_store(args)
    run_id = resolve_run(store, args.run)
    control = {"pause": "pause", "stop": "stop"}[args.command]
    path = live_config_path(store.runs_dir, run_id)
    send_request(path, lambda: request_control(path, control, fallback=store.current_config(run_id)))
    print(f"{args.command} sent to {run_id} (takes effect at the next training step)")


def send_request(path: Path, write: Callable[[], SetAside | None]) -> None:
    """``write`` a request into the live file ``path``; say so if a bad edit standing there was set aside."""
    try:
        set_aside = write()
    except OSError as exc:
        fail(f"could not write {path}: {exc.strerror or exc}; check that its folder is there and writable", code=1)
    if set_aside is not None:
        print(terminal_text(f"note: {path}: {set_aside.describe()}"), file=sys.stderr)


def cmd_suggest(args) -> None:
    from tiller.trainer.cli import advisor as cli_advisor

    store = open_store(args)
    cli_advisor.cmd_suggest(args, store, resolve_run(store, args.run), fail)


def cmd_revert(args) -> None:
    from tiller.trainer.cli import advisor as cli_advisor

    store = open_store(args)
    cli_advisor.cmd_revert(args, store, resolve_run(store, args.run), fail)


def cmd_make_sample_data(args) -> None:
    from tiller.trainer.data.sample_data import write_sample_data

    try:
        write_sample_data(args.dir)
    except OSError as exc:
        fail(f"cannot write sample data: {exc}")


def cmd_keys(args) -> None:
    print(report.keys_table(describe_keys()))


def resolve_run(store: Store, ref: str) -> str:
    try:
        return store.find_run(ref)
    except RunNotFound as exc:
        fail(str(exc))


# ---------------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--runs-dir", default=argparse.SUPPRESS, metavar="DIR",
                        help=f"where runs live (default ./runs, or ${RUNS_DIR_ENV})")
    parser = argparse.ArgumentParser(prog="tiller", description="Watch and steer PyTorch training runs.",
                                     parents=[common])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    p = add("demo", cmd_demo, "train on built-in data in the background and open the dashboard")
    _dashboard_options(p)
    p = add("train", cmd_train, "train a run from a config file")
    p.add_argument("--config", type=Path, help="JSON config (missing keys take their defaults)")
    p.add_argument("--set", type=parse_assignment, action="append", metavar="KEY=VALUE",
                   help="override one key, e.g. --set learning_rate=0.01 (repeatable)")
    p.add_argument("--name", help="a readable name for the run")
    p.add_argument("--nproc", type=positive_int, default=1, metavar="N",
                   help="train with N processes on this machine (data parallel, through torchrun; gloo on CPU, "
                        "NCCL on GPUs); for several machines run torchrun -m tiller train ... yourself")
    p = add("dashboard", cmd_dashboard, "serve the dashboard")
    _dashboard_options(p)
    p = add("runs", cmd_runs, "list runs")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = add("show", cmd_show, "show a run: config, versions, metrics, events")
    p.add_argument("run", help="run id, a unique prefix of it, or 'latest'")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = add("set", cmd_set, "change hot config keys of a running run at its next epoch")
    p.add_argument("run", help="run id, a unique prefix of it, or 'latest'")
    p.add_argument("assignments", type=parse_assignment, nargs="+", metavar="KEY=VALUE")
    p.add_argument("--reason", default="", help="why; recorded with the config version")
    for verb, text in (("pause", "pause a run at its next step"), ("stop", "stop a run at its next step")):
        p = add(verb, cmd_control, text)
        p.add_argument("run", help="run id, a unique prefix of it, or 'latest'")
    p = add("resume", cmd_resume, "resume a paused run, or continue a crashed, failed or stopped run from its "
                                  "last checkpoint (in this terminal)")
    p.add_argument("run", help="run id, a unique prefix of it, or 'latest'")
    p = add("suggest", cmd_suggest, "ask the advisor (Claude, or offline rules without a key) about a run")
    p.add_argument("run", help="run id, a unique prefix of it, or 'latest'")
    p.add_argument("--question", "-q", help="what you want to know, e.g. 'why is val loss rising?'")
    p.add_argument("--apply", action="store_true", help="send every valid suggestion to the run (source llm)")
    p.add_argument("--offline", action="store_true", help="use the offline rules even when ANTHROPIC_API_KEY is set")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = add("revert", cmd_revert, "take a running run back to the config before a version")
    p.add_argument("run", help="run id, a unique prefix of it, or 'latest'")
    p.add_argument("version", type=int, help="the config version to undo (see tiller show)")
    add("keys", cmd_keys, "list config keys: defaults, bounds, which may change mid-run")
    p = add("make-sample-data", cmd_make_sample_data,
            "write small offline data sets (CT-like images, defects, reviews, MNIST) to try the recipes on")
    p.add_argument("dir", type=Path, nargs="?", default=Path("sample-data"),
                   help="where to write them (default sample-data, where the examples look)")
    return parser


def port_number(text: str) -> int:
    port = positive_int(text)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"a port is at most 65535, got {port}")
    return port


def _dashboard_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=port_number, default=8501, help="port to serve on (default 8501)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: only this machine can reach it)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser window")
    p.add_argument("--origin", type=origin_url, action="append", default=[], metavar="URL",
                   help="also answer pages served at URL, e.g. https://tiller.example.com behind a reverse proxy "
                        "(repeatable; otherwise only the dashboard's own address is answered)")


def origin_url(text: str) -> str:
    from tiller.dashboard.serve import parse_origin

    try:
        return parse_origin(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected scheme://host[:port], e.g. https://tiller.example.com, "
                                         f"got {text!r}") from None


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    # --runs-dir may come before or after the command; its default is "not given".
    args.runs_dir = getattr(args, "runs_dir", None)
    try:
        if args.handler in (cmd_dashboard, cmd_demo):
            check_database(args)
        args.handler(args)
        sys.stdout.flush()  # a closed pipe shows here, while the error can still be handled
    except BrokenPipeError:
        reader_went_away()
    except Exception as exc:
        # A tiller.db that is not a database, or corrupt: found on opening it (StoreCorrupt) or, for
        # damage deeper in the file, by the query that reads it. One line, not a traceback.
        corrupt = corruption_in(exc, resolve_runs_dir(args.runs_dir) / DB_FILENAME)
        if corrupt is None:
            raise
        fail(str(corrupt), code=1)


def reader_went_away() -> None:
    """``tiller runs | head -1``: the reader closed the pipe; end quietly, as Unix tools do.

    Python's own flush of stdout at exit would raise again, so stdout goes to devnull first.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    raise SystemExit(141)  # 128 + SIGPIPE, what a shell reports for a killed writer

