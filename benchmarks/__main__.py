"""Every Tiller benchmark in one command, written as JSON and a Markdown report.

    python -m benchmarks [--quick] [--only logging,dashboard,evaluation,training,steering] [--out benchmarks/results]

Runs each benchmark module's ``measure`` in turn (one at a time, so they do not
disturb each other's timings), prints each Markdown section as it finishes, and
writes ``<out>/latest.json`` and ``<out>/latest.md`` headed by the date and the
machine. ``--quick`` uses small workloads (about a minute in all) to check that
everything runs; the published figures come from a full run on an idle machine.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import platform
import sqlite3
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

BENCHMARKS = {  # name -> module; the order they run and appear in
    "logging": "benchmarks.logging_bench",
    "dashboard": "benchmarks.dashboard_bench",
    "evaluation": "benchmarks.eval_page",
    "training": "benchmarks.training_bench",
    "steering": "benchmarks.steering_bench",
}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def gpu_name() -> str:
    try:
        import torch
    except ImportError:  # an environment made for the peers only
        return "unknown (no torch)"
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"


def machine() -> dict:
    memory = memory_gib()
    return {
        "cpu": cpu_model(), "cores": os.cpu_count(), "memory_gib": round(memory, 1) if memory else None,
        "gpu": gpu_name(), "os": platform.platform(), "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        **{package: version(package) for package in ("torch", "pandas", "streamlit")},
    }


def header(when: datetime, box: dict, quick: bool) -> str:
    memory = f", {box['memory_gib']} GiB" if box["memory_gib"] else ""
    return "\n".join([
        f"## Tiller benchmarks, {when:%Y-%m-%d %H:%M} UTC" + (" (quick: small workloads, not for publishing)" if quick else ""),
        "",
        f"Machine: {box['cpu']}, {box['cores']} cores{memory}, GPU: {box['gpu']}; {box['os']}; "
        f"Python {box['python']}, SQLite {box['sqlite']}, torch {box['torch']}, pandas {box['pandas']}, "
        f"Streamlit {box['streamlit']}.",
    ])


def run_one(name: str, quick: bool) -> tuple[dict, str]:
    module = importlib.import_module(BENCHMARKS[name])
    began = time.perf_counter()
    print(f"[{name}] measuring ...", file=sys.stderr, flush=True)
    result = module.measure(quick=quick)
    result["benchmark_seconds"] = time.perf_counter() - began
    print(f"[{name}] done in {result['benchmark_seconds']:.0f} s", file=sys.stderr, flush=True)
    return result, module.markdown(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small workloads: checks that everything runs")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help=f"comma-separated subset of {', '.join(BENCHMARKS)}")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results",
                        help="folder for latest.json and latest.md")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")

    when, box = datetime.now(timezone.utc), machine()
    sections = [header(when, box, args.quick)]
    print(sections[0] + "\n", flush=True)
    results = {}
    for name in chosen:
        results[name], section = run_one(name, args.quick)
        sections.append(section)
        print(section + "\n", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    report = {"date": when.isoformat(timespec="seconds"), "quick": args.quick, "machine": box, "results": results}
    (args.out / "latest.json").write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    (args.out / "latest.md").write_text("\n\n".join(sections) + "\n", encoding="utf-8")
    print(f"wrote {args.out / 'latest.json'} and {args.out / 'latest.md'}", file=sys.stderr)


if __name__ == "__main__":
    main()
